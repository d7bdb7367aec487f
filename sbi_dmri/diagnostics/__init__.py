"""Diagnostics of an amortized posterior (EVALUATION.md): calibration, recovery, per-voxel trust.

Inputs are arrays of posterior draws `samples (n_sims, n_draws, n_params)` and `truths
(n_sims, n_params)` (NumPy or JAX; results are NumPy). `evaluate_gates` runs them all and returns
a JSON-serialisable dict of pass/fail per gate with the numbers. `toy` holds a linear-Gaussian
problem with an exact posterior for tests.
"""

from sbi_dmri.diagnostics.c2st import c2st as c2st
from sbi_dmri.diagnostics.coverage import CoverageResult as CoverageResult
from sbi_dmri.diagnostics.coverage import coverage_gate as coverage_gate
from sbi_dmri.diagnostics.coverage import expected_coverage as expected_coverage
from sbi_dmri.diagnostics.importance import importance_ess as importance_ess
from sbi_dmri.diagnostics.importance import khat_threshold as khat_threshold
from sbi_dmri.diagnostics.importance import pareto_khat as pareto_khat
from sbi_dmri.diagnostics.plots import plot_coverage as plot_coverage
from sbi_dmri.diagnostics.plots import plot_recovery as plot_recovery
from sbi_dmri.diagnostics.plots import plot_sbc_ranks as plot_sbc_ranks
from sbi_dmri.diagnostics.plots import plot_tarp as plot_tarp
from sbi_dmri.diagnostics.recovery import angular_error_deg as angular_error_deg
from sbi_dmri.diagnostics.recovery import axis_mean as axis_mean
from sbi_dmri.diagnostics.recovery import posterior_prior_width_ratio as posterior_prior_width_ratio
from sbi_dmri.diagnostics.recovery import recovery_table as recovery_table
from sbi_dmri.diagnostics.report import evaluate_gates as evaluate_gates
from sbi_dmri.diagnostics.report import to_json as to_json
from sbi_dmri.diagnostics.sbc import randomised_pit as randomised_pit
from sbi_dmri.diagnostics.sbc import rank_histogram as rank_histogram
from sbi_dmri.diagnostics.sbc import sbc_gate as sbc_gate
from sbi_dmri.diagnostics.sbc import sbc_ks_test as sbc_ks_test
from sbi_dmri.diagnostics.sbc import sbc_ranks as sbc_ranks
from sbi_dmri.diagnostics.tarp import TarpResult as TarpResult
from sbi_dmri.diagnostics.tarp import tarp as tarp
from sbi_dmri.diagnostics.tarp import tarp_gate as tarp_gate
from sbi_dmri.diagnostics.toy import LinearGaussian as LinearGaussian
from sbi_dmri.diagnostics.toy import toy_test_set as toy_test_set
