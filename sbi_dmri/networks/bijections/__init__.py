"""Elementwise bijections used inside coupling layers; one family per file.

Each family exports `forward(x, params) -> (y, log|dy/dx|)`, `inverse(y, params) -> (x, log|dy/dx| at x)`
(both elementwise) and `n_params(...)`, the number of raw conditioner outputs per dimension.
"""

from . import affine as affine
from . import rational_quadratic as rational_quadratic
