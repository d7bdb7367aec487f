"""Strict JSON from NumPy-laden results (diagnostics reports, compendium records, model cards)."""

from __future__ import annotations

import math

import numpy as np


def to_jsonable(value):
    """Recursively convert NumPy scalars/arrays to Python; non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
