"""SBC, expected coverage and TARP pass on the exact posterior of the toy problem and fail on an
over-confident (variance × 0.5) and a biased (mean + 1 posterior sd) one."""

import numpy as np
import pytest

from sbi_dmri.diagnostics.coverage import coverage_gate, expected_coverage
from sbi_dmri.diagnostics.sbc import rank_histogram, randomised_pit, sbc_gate, sbc_ks_test, sbc_ranks
from sbi_dmri.diagnostics.tarp import tarp, tarp_gate
from sbi_dmri.diagnostics.toy import LinearGaussian, toy_test_set

from .conftest import N_DRAWS


def _sbc(test_set):
    samples, truths = test_set
    p_values = sbc_ks_test(sbc_ranks(samples, truths), N_DRAWS)
    return sbc_gate(p_values), p_values


# --- SBC ----------------------------------------------------------------------------------------


def test_sbc_passes_exact_posterior(exact_set):
    (passed, threshold), p_values = _sbc(exact_set)
    assert threshold == pytest.approx(0.05 / 3)
    assert passed, p_values


@pytest.mark.parametrize("wrong", ["overconfident_set", "biased_set"])
def test_sbc_fails_wrong_posterior(wrong, request):
    (passed, _), p_values = _sbc(request.getfixturevalue(wrong))
    assert not passed
    assert np.all(p_values < 1e-6), p_values  # every parameter, not just one


def test_sbc_fails_wrong_posteriors_at_minimum_size():
    for kwargs in (dict(variance_scale=0.5), dict(mean_shift=1.0)):
        samples, truths = toy_test_set(21, 1000, 100, **kwargs)
        assert not sbc_gate(sbc_ks_test(sbc_ranks(samples, truths), 100))[0], kwargs


def test_ranks_count_draws_below_truth_and_break_ties_uniformly():
    samples = np.array([[[0.0], [1.0], [2.0], [3.0]]])  # one simulation, four draws
    assert sbc_ranks(samples, np.array([[2.5]]))[0, 0] == 3
    assert sbc_ranks(samples, np.array([[-1.0]]))[0, 0] == 0
    # truth tied with every draw of a constant sampler: ranks spread uniformly over 0..L
    tied = np.zeros((20_000, 4, 1))
    ranks = sbc_ranks(tied, np.zeros((20_000, 1)), seed=3)[:, 0]
    np.testing.assert_allclose(np.bincount(ranks, minlength=5) / 20_000, 0.2, atol=0.01)


def test_randomised_pit_of_uniform_ranks_is_uniform():
    ranks = np.random.default_rng(0).integers(0, 11, size=(50_000, 1))  # L = 10: very discrete
    u = randomised_pit(ranks, 10)[:, 0]
    probs = [0.1, 0.25, 0.5, 0.75, 0.9]
    np.testing.assert_allclose(np.quantile(u, probs), probs, atol=0.01)
    assert sbc_ks_test(ranks, 10)[0] > 0.01
    with pytest.raises(ValueError):
        randomised_pit(ranks, 9)


def test_rank_histogram_band_matches_binomial():
    ranks = np.random.default_rng(1).integers(0, 101, size=(10_000, 2))
    edges, counts, expected, lower, upper = rank_histogram(ranks, 100, n_bins=20)
    assert counts.sum(axis=0).tolist() == [10_000, 10_000]
    np.testing.assert_allclose(expected.sum(), 10_000)
    # 101 integers in 20 bins: bins hold 5 or 6 ranks and have their own expectation
    np.testing.assert_allclose(expected, 10_000 * np.diff(edges) / 101)
    assert set(np.diff(edges)) == {5, 6}
    inside = (counts >= lower[:, None]) & (counts <= upper[:, None])
    assert inside.mean() >= 0.9  # 99 % band


# --- coverage -----------------------------------------------------------------------------------


def test_coverage_passes_exact_posterior(exact_set):
    result = expected_coverage(*exact_set)
    passed, per_cell, conservative = coverage_gate(result)
    assert passed, result.coverage
    assert np.all(np.abs(result.coverage - result.levels[:, None]) < 4 * result.se[:, None])
    assert not conservative.any()


@pytest.mark.parametrize("wrong", ["overconfident_set", "biased_set"])
def test_coverage_fails_wrong_posterior(wrong, request):
    result = expected_coverage(*request.getfixturevalue(wrong))
    passed, per_cell, _ = coverage_gate(result)
    assert not passed
    assert not per_cell.any()  # under-covers at every level, for every parameter


def test_coverage_of_overconfident_posterior_matches_closed_form(overconfident_set):
    # sd × √0.5: the central γ interval covers 2Φ(√0.5 · z_γ) − 1 of the true posterior mass
    from scipy.stats import norm

    result = expected_coverage(*overconfident_set)
    z = norm.ppf((1 + result.levels) / 2)
    expected = 2 * norm.cdf(np.sqrt(0.5) * z) - 1
    se = np.sqrt(expected * (1 - expected) / result.n_sims)  # binomial SE at the true coverage
    assert np.all(np.abs(result.coverage - expected[:, None]) < 4 * se[:, None]), result.coverage


def test_conservative_posterior_passes_coverage_and_is_flagged():
    result = expected_coverage(*toy_test_set(22, 10_000, 100, variance_scale=2.0))
    passed, _, conservative = coverage_gate(result)
    assert passed and conservative.all()


def test_quantile_intervals_under_cover_with_few_draws_rank_intervals_do_not(exact_set):
    rank = expected_coverage(*exact_set, levels=(0.95,))
    quantile = expected_coverage(*exact_set, levels=(0.95,), method="quantile")
    # np.quantile's linear interpolation over 100 draws spans order statistics ≈ 3.5 … 97.5
    assert np.all(np.abs(rank.coverage - 0.95) < 3 * rank.se)
    np.testing.assert_allclose(quantile.coverage, 94.05 / 101, atol=3 * quantile.se[0])


def test_coverage_gate_rule_is_one_sided_with_a_hard_floor():
    from sbi_dmri.diagnostics.coverage import CoverageResult

    se = np.sqrt(0.5 * 0.5 / 1000)  # 0.0158: 3 SE = 0.047 > 0.02, the floor binds
    make = lambda c: CoverageResult(np.array([0.5]), np.array([[c]]), np.array([se]), 1000)
    assert coverage_gate(make(0.481))[0]
    assert not coverage_gate(make(0.479))[0]  # within 3 SE but more than 0.02 below nominal
    assert coverage_gate(make(0.6))[0]  # conservative passes


# --- TARP ---------------------------------------------------------------------------------------


def test_tarp_passes_exact_posterior(exact_set):
    result = tarp(*exact_set, seed=0)
    assert tarp_gate(result), (result.atc, result.atc_upper)
    assert result.ks_pvalue > 0.01
    assert result.ecp[0] == 0 and result.ecp[-1] == 1


@pytest.mark.parametrize("wrong", ["overconfident_set", "biased_set"])
def test_tarp_fails_wrong_posterior(wrong, request):
    result = tarp(*request.getfixturevalue(wrong), seed=0)
    assert not tarp_gate(result)
    assert result.ks_pvalue < 1e-10


def test_tarp_signs_overconfident_negative_underconfident_positive(overconfident_set):
    assert tarp(*overconfident_set).atc_upper < -0.02
    assert tarp(*toy_test_set(23, 10_000, 100, variance_scale=2.0)).atc_upper > 0.02


def test_tarp_upper_half_catches_overconfidence_that_cancels_in_1d():
    # 1-d, over-confident, every reference far to the left: the credibility f is then the PIT of
    # the truth under the wrong posterior, ∪-shaped and symmetric, so ∫₀¹(ECP − α) cancels
    problem = LinearGaussian.default(d=1, m=2)
    samples, truths = toy_test_set(3, 10_000, 100, problem=problem, variance_scale=0.5)
    result = tarp(samples, truths, references=np.full((10_000, 1), -100.0))
    assert abs(result.atc) < 0.01
    assert result.atc_upper < -0.02 and not tarp_gate(result)
    # with the default (prior) references the full-range area sees it too
    assert tarp(samples, truths).atc < -0.02


def test_tarp_atc_closed_forms_equal_the_integrals(exact_set):
    result = tarp(*exact_set[:2], n_grid=100_001)
    gap = result.ecp - result.alpha
    upper = result.alpha >= 0.5
    np.testing.assert_allclose(np.trapezoid(gap, result.alpha), result.atc, atol=1e-4)
    np.testing.assert_allclose(np.trapezoid(gap[upper], result.alpha[upper]), result.atc_upper, atol=1e-4)


def test_tarp_is_invariant_to_parameter_units_with_normalisation(exact_set):
    samples, truths = exact_set
    scale = np.array([1.0, 1e3, 1e-3])
    a = tarp(samples, truths, seed=5)
    b = tarp(samples * scale, truths * scale, seed=5)
    np.testing.assert_allclose(a.credibility, b.credibility, atol=1e-12)
    lower, upper = truths.min(axis=0) - 1, truths.max(axis=0) + 1
    c = tarp(samples, truths, seed=5, bounds=(lower, upper))
    assert tarp_gate(c)


@pytest.mark.slow
def test_gates_rarely_fail_a_correct_posterior_at_10000_simulations():
    # the false-failure rate of each gate on the exact posterior, over independent test sets
    n_sets, failures = 30, {"sbc": 0, "coverage": 0, "tarp": 0}
    for seed in range(n_sets):
        samples, truths = toy_test_set(1000 + seed, 10_000, 100)
        failures["sbc"] += not _sbc((samples, truths))[0][0]
        failures["coverage"] += not coverage_gate(expected_coverage(samples, truths, seed=seed))[0]
        failures["tarp"] += not tarp_gate(tarp(samples, truths, seed=seed))
    # SBC: ≤ 5 % by construction (Bonferroni); coverage and TARP ≪ 5 % at this size
    assert failures["sbc"] <= 4 and failures["coverage"] <= 2 and failures["tarp"] <= 2, failures


# --- importance-weighted draws ---------------------------------------------------------------------


def test_weighted_pit_with_equal_weights_is_the_randomised_rank_pit(exact_set):
    from sbi_dmri.diagnostics.sbc import weighted_randomised_pit

    samples, truths = exact_set
    samples, truths = samples[:2000], truths[:2000]
    equal = weighted_randomised_pit(samples < truths[:, None, :], np.ones(samples.shape[:2]), seed=5)
    np.testing.assert_allclose(equal, randomised_pit(sbc_ranks(samples, truths), samples.shape[1], seed=5), atol=1e-12)


def test_importance_weights_recalibrate_a_wrong_proposal():
    """Draws of a biased, 2×-too-wide Gaussian, weighted by exact posterior / proposal density, pass SBC,
    coverage and TARP on 10000 toy simulations; the same draws unweighted fail SBC and TARP (too wide:
    coverage passes as conservative)."""
    from sbi_dmri.diagnostics.report import evaluate_gates

    p = LinearGaussian.default()
    rng = np.random.default_rng(31)
    n, L = 10_000, 400
    theta = p.mu0[None, :] + rng.normal(size=(n, p.dim)) @ np.linalg.cholesky(p.cov0).T
    x = theta @ p.A.T + p.sigma * rng.normal(size=(n, p.A.shape[0]))
    cov = p.posterior_cov
    mean = (x @ p.A / p.sigma**2 + np.linalg.solve(p.cov0, p.mu0)[None, :]) @ cov.T
    shift = 0.7 * np.sqrt(np.diag(cov))
    chol_q = np.linalg.cholesky(4.0 * cov)
    draws = (mean + shift)[:, None, :] + rng.normal(size=(n, L, p.dim)) @ chol_q.T

    def log_normal(v, m, c):
        z = np.linalg.solve(np.linalg.cholesky(c), (v - m).reshape(-1, p.dim).T).T.reshape(v.shape)
        return -0.5 * np.sum(z**2, axis=-1)  # constants cancel in the normalised weights

    lw = log_normal(draws, mean[:, None], cov) - log_normal(draws, (mean + shift)[:, None], 4.0 * cov)
    w = np.exp(lw - lw.max(axis=1, keepdims=True))
    weighted = evaluate_gates(draws, theta, weights=w, seed=1)
    plain = evaluate_gates(draws, theta, seed=1)
    assert weighted["sbc"]["pass"] and weighted["coverage"]["pass"] and weighted["tarp"]["pass"], weighted
    assert not (plain["sbc"]["pass"] or plain["tarp"]["pass"])
    assert all(all(c) for c in plain["coverage"]["conservative"].values())
    levels = np.asarray(weighted["coverage"]["levels"])
    for c in weighted["coverage"]["coverage"].values():
        assert np.all(np.abs(np.asarray(c) - levels) < 0.015), c
    # the default estimate is the weighted mean: the exact posterior mean up to Monte Carlo error
    est = np.einsum("nl,nlp->np", w / w.sum(axis=1, keepdims=True), draws)
    assert np.sqrt(np.mean((est - mean) ** 2)) < 0.1 * np.sqrt(np.mean(np.diag(cov)))
