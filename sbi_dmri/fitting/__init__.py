"""Classical voxelwise estimators: Optimistix NLLS (`fit_nlls`) and blackjax NUTS reference posteriors."""

from .nlls import fit_nlls as fit_nlls
from .result import FitResult as FitResult
