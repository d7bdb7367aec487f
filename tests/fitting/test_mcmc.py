"""NUTS reference posteriors: an exactly solvable linear-Gaussian posterior, split-R̂, ball_stick chains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.fitting.mcmc import ess, nuts_chain, sample_posterior, split_rhat
from sbi_dmri.noise import add_noise

from .helpers import ball_stick_truths, three_shell


def test_linear_gaussian_posterior_mean_and_variance():
    """z ~ N(0, I₂), y = A z + N(0, σ²): posterior N(P⁻¹Aᵀy/σ², P⁻¹), P = I + AᵀA/σ²."""
    rng = np.random.default_rng(0)
    A, sigma = rng.normal(size=(6, 2)), 0.5
    y = A @ np.array([0.7, -1.2]) + sigma * rng.normal(size=6)
    P = np.eye(2) + A.T @ A / sigma**2
    cov = np.linalg.inv(P)
    mean = cov @ A.T @ y / sigma**2

    def logdensity(z):
        return -0.5 * jnp.sum(z**2) - 0.5 * jnp.sum((y - A @ z) ** 2) / sigma**2

    run = jax.jit(jax.vmap(lambda z0, k: nuts_chain(logdensity, z0, k, num_warmup=300, num_samples=1000)))
    draws, info = run(jnp.asarray(rng.normal(size=(4, 2)) * 3), jax.random.split(jax.random.key(1), 4))
    draws = np.asarray(draws)
    n_eff = ess(draws)
    assert np.all(split_rhat(draws) < 1.01) and np.all(n_eff > 1000)
    flat = draws.reshape(-1, 2)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(flat.mean(0) - mean) < 4 * sd / np.sqrt(n_eff))
    # Var of a sample variance ≈ 2σ⁴/n_eff for Gaussian draws.
    assert np.all(np.abs(flat.var(0) / np.diag(cov) - 1) < 4 * np.sqrt(2 / n_eff))
    assert int(np.sum(info["divergences"])) == 0


def test_split_rhat_detects_chains_that_disagree():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 1000))
    assert split_rhat(iid) < 1.01
    shifted = iid + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    assert split_rhat(shifted) > 1.1
    # A trend inside each chain is what splitting catches even when the chains agree.
    trend = iid + np.linspace(-1.5, 1.5, 1000)[None, :]
    assert split_rhat(trend) > 1.1


def _ball_stick_posteriors(n_vox, num_samples, seed, num_warmup=400, init_at_truth=False):
    m, acq = models.get("ball_stick"), three_shell()
    truth = ball_stick_truths(np.random.default_rng(seed), n_vox, f=(0.3, 0.8), d_par=(1.0, 2.5),
                              d_iso=(0.5, 3.0))
    mu = jax.vmap(m.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.key(seed), mu, 50.0, "rician"))
    init = {k: np.asarray(v) for k, v in truth.items()} if init_at_truth else None  # None: NLLS
    ps = sample_posterior(m, acq, y, sigma=1 / 50, noise="rician", n_chains=4, num_warmup=num_warmup,
                          num_samples=num_samples, init=init, key=jax.random.key(seed))
    return truth, ps


def test_ball_stick_chains_converge_and_cover_the_truth():
    """Small default-run version (one voxel, short chains; the chains start jittered about the truth,
    which exercises the sampler, not the NLLS start): R̂ and ESS sane, truth inside ±4 sd."""
    truth, ps = _ball_stick_posteriors(1, 300, seed=0, num_warmup=200, init_at_truth=True)
    assert np.all(ps.rhat < 1.03), ps.rhat
    assert np.all(ps.ess > 100), ps.ess
    for k in ("d_par", "d_iso", "f_stick"):
        z = np.abs(ps.params[k].mean(1) - np.asarray(truth[k])) / ps.params[k].std(1)
        assert np.all(z < 4), (k, z)


@pytest.mark.slow
def test_ball_stick_rhat_below_1_01_on_20_voxels():
    """The EVALUATION.md reference-posterior gate: R̂ < 1.01 and ESS > 400 on ≥ 20 voxels."""
    _, ps = _ball_stick_posteriors(20, 1000, seed=1)
    assert np.all(ps.rhat < 1.01), ps.rhat.max(1)
    assert np.all(ps.ess > 400), ps.ess.min(1)
    assert ps.divergences.sum() == 0
