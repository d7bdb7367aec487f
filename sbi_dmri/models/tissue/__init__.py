"""Tissue models: compositions of compartments, each registered by name (kind "tissue")."""

from . import ball_stick  # noqa: F401
