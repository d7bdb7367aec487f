"""PSIS Pareto k̂: recovers a known GPD shape, small for matched proposals, > 0.7 for heavy tails."""

import numpy as np
import pytest
from scipy import stats

from sbi_dmri.diagnostics.importance import importance_ess, khat_threshold, pareto_khat


@pytest.mark.parametrize("xi", [0.2, 0.5, 0.9])
def test_recovers_shape_of_generalized_pareto_weights(xi):
    w = 1.0 + stats.genpareto.rvs(xi, size=(60, 4000), random_state=np.random.default_rng(0))
    k = pareto_khat(np.log(w))
    assert abs(np.median(k) - xi) < 0.06


def _gaussian_log_weights(seed, proposal_sd, target_sd, n_voxels=100, n_draws=2000):
    x = np.random.default_rng(seed).normal(size=(n_voxels, n_draws)) * proposal_sd
    return stats.norm.logpdf(x, scale=target_sd) - stats.norm.logpdf(x, scale=proposal_sd)


def test_wider_proposal_gives_small_khat():
    # bounded ratios (proposal wider than target): every voxel trusted
    k = pareto_khat(_gaussian_log_weights(1, proposal_sd=1.0, target_sd=0.9))
    assert np.all(k < 0.5)


def test_slightly_narrow_proposal_is_still_fine_and_much_too_narrow_is_flagged():
    # ratios of N(0, s_t²)/N(0, s_p²) under N(0, s_p²) have a Pareto tail with k = 1 − s_p²/s_t²
    k_ok = pareto_khat(_gaussian_log_weights(2, proposal_sd=1.0, target_sd=1.2))  # k = 0.31
    k_bad = pareto_khat(_gaussian_log_weights(3, proposal_sd=1.0, target_sd=3.0))  # k = 0.89
    assert np.median(k_ok) < 0.5
    assert np.median(k_bad) > 0.7 and np.mean(k_bad > 0.7) > 0.6


def test_khat_is_invariant_to_a_constant_per_voxel_and_handles_constant_weights():
    lw = _gaussian_log_weights(4, 1.0, 2.0, n_voxels=5)
    np.testing.assert_allclose(pareto_khat(lw + 1000.0), pareto_khat(lw), atol=1e-10)
    assert pareto_khat(np.zeros((2, 100)))[0] == -np.inf  # perfect proposal: no tail at all
    with pytest.raises(ValueError):
        pareto_khat(np.full((1, 100), np.nan))


def test_effective_sample_size_and_threshold():
    assert importance_ess(np.zeros((1, 500)))[0] == pytest.approx(500)
    lw = np.array([[0.0, 0.0, np.log(2.0), -np.inf]])  # w = 1, 1, 2, 0: (Σw)²/Σw² = 16/6
    assert importance_ess(lw)[0] == pytest.approx(16 / 6)
    assert khat_threshold(1000) == pytest.approx(2 / 3)
    assert khat_threshold(10**6) == pytest.approx(0.7)


def test_voxel_with_all_zero_weights_is_flagged_without_warnings():
    """Every log weight −inf (likelihood underflow at every draw): k̂ = +inf, ESS = 0, no NaN warnings;
    the other voxels of the same call are unaffected."""
    import warnings

    good = _gaussian_log_weights(5, 1.0, 1.2, n_voxels=2, n_draws=400)
    lw = np.concatenate([good[:1], np.full((1, 400), -np.inf), good[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = pareto_khat(lw)
        ess = importance_ess(lw)
    assert k[1] == np.inf and k[1] > khat_threshold(400)
    np.testing.assert_allclose(k[[0, 2]], pareto_khat(good), atol=1e-12)
    assert ess[1] == 0.0 and np.all(ess[[0, 2]] > 50)
