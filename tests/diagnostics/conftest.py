"""Shared, seeded test sets from the linear-Gaussian toy (exact posterior and deliberately wrong ones).

10000 simulations: the coverage (0.02 floor) and TARP (|ATC| ≤ 0.01) gates fail a *correct*
posterior often at the minimum 1000 (see coverage.py, tarp.py); the failure cases are also checked
at the minimum size. Session-scoped: generating them costs < 1 s, but they are used by several files.
"""

import pytest

from sbi_dmri.diagnostics.toy import toy_test_set

N_SIMS, N_DRAWS = 10_000, 100


@pytest.fixture(scope="session")
def exact_set():
    return toy_test_set(11, N_SIMS, N_DRAWS)


@pytest.fixture(scope="session")
def overconfident_set():
    """Exact mean, variance × 0.5."""
    return toy_test_set(12, N_SIMS, N_DRAWS, variance_scale=0.5)


@pytest.fixture(scope="session")
def biased_set():
    """Exact covariance, mean shifted by one posterior sd in every parameter."""
    return toy_test_set(13, N_SIMS, N_DRAWS, mean_shift=1.0)
