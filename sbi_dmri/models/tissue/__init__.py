"""Tissue models: compositions of compartments, each registered by name (kind "tissue")."""

from . import ball_stick  # noqa: F401
from . import noddi  # noqa: F401
from . import smt  # noqa: F401
from . import nexi  # noqa: F401
from . import dti  # noqa: F401
from . import sandi  # noqa: F401
from . import axcaliber  # noqa: F401
