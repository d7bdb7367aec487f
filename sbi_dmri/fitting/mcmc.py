"""Reference posteriors: blackjax NUTS on the analytic likelihood, per voxel.

The target, in the unconstrained chart of the model's prior (axes charted about the NLLS estimate,
`chart.py`), is

    log p(z | y) = log L(y | S0·E(θ(z)), σ) + log p_prior(θ(z)) + log|∂θ/∂z| + const,

with L Gaussian or Rician. Each chain runs Stan's window adaptation (step size and diagonal mass
matrix; `blackjax.window_adaptation`), then NUTS. Several chains per voxel start from the NLLS
estimate plus jitter, or each from its own given point (e.g. a draw of an approximate posterior: spread
over the posterior's bulk, so R̂ keeps its meaning, and off the box boundaries where a degenerate NLLS
fit sits); chains and voxels are mapped over. Convergence is reported per voxel and per
chart coordinate as split-R̂ (Gelman et al., Bayesian Data Analysis 3rd ed., §11.4) and the
multi-chain effective sample size of `blackjax.diagnostics`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from blackjax.diagnostics import effective_sample_size, potential_scale_reduction

from ..acquisition import Acquisition
from ..models.base import Model
from ..noise import NOISE_KINDS, log_likelihood, log_likelihood_s0_marginal
from . import chart


def nuts_chain(logdensity_fn: Callable, position: jax.Array, key, *, num_warmup: int, num_samples: int,
               target_acceptance: float = 0.8):
    """One NUTS chain with window adaptation; pure (jit/vmap it outside).

    Args:
        logdensity_fn: z (dim,) → scalar log density (unnormalised).
        position: (dim,) starting point.
        target_acceptance: the step-size adaptation's target mean acceptance (Stan's adapt_delta; higher:
            smaller steps, fewer divergences in funnels, more gradient evaluations).
    Returns:
        draws (num_samples, dim), and a dict with the mean acceptance rate and the divergence count.
    """
    k_warm, k_sample = jax.random.split(key)
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity_fn, target_acceptance_rate=target_acceptance,
                                        adaptation_info_fn=get_filter_adapt_info_fn())
    (state, parameters), _ = warmup.run(k_warm, position, num_steps=num_warmup)
    kernel = blackjax.nuts(logdensity_fn, **parameters)

    def step(state, k):
        state, info = kernel.step(k, state)
        return state, (state.position, info.acceptance_rate, info.is_divergent)

    _, (draws, acc, div) = jax.lax.scan(step, state, jax.random.split(k_sample, num_samples))
    return draws, {"acceptance_rate": jnp.mean(acc), "divergences": jnp.sum(div)}


def split_rhat(draws) -> np.ndarray:
    """Split-R̂ of draws (n_chains, n_samples, ...): each chain halved, then the potential scale reduction."""
    draws = np.asarray(draws)
    half = draws.shape[1] // 2
    halves = np.concatenate([draws[:, :half], draws[:, half:2 * half]], axis=0)
    return np.asarray(potential_scale_reduction(halves, chain_axis=0, sample_axis=1))


def ess(draws) -> np.ndarray:
    """Multi-chain effective sample size of draws (n_chains, n_samples, ...)."""
    return np.asarray(effective_sample_size(np.asarray(draws), chain_axis=0, sample_axis=1))


@dataclasses.dataclass(frozen=True)
class PosteriorSamples:
    """NUTS draws for V voxels.

    Attributes:
        params: name → constrained draws (V, n_chains · n_samples) (axes (..., 3), n_z ≥ 0).
        z: chart draws (V, n_chains, n_samples, dim), axes about `centres`.
        centres: axis name → (V, 3) chart centres.
        rhat, ess: (V, dim) split-R̂ and effective sample size of each chart coordinate.
        divergences: (V,) divergent transitions summed over chains.
        acceptance_rate: (V,) mean over chains.
    """

    params: dict[str, np.ndarray]
    z: np.ndarray
    centres: dict[str, np.ndarray]
    rhat: np.ndarray
    ess: np.ndarray
    divergences: np.ndarray
    acceptance_rate: np.ndarray


def sample_posterior(
    model: Model,
    acquisition: Acquisition,
    signals,
    *,
    sigma,
    noise: str = "rician",
    init: dict[str, np.ndarray] | None = None,
    starts: dict[str, np.ndarray] | None = None,
    n_chains: int = 4,
    num_warmup: int = 500,
    num_samples: int = 500,
    jitter: float = 0.1,
    key=None,
    s0_marginal: bool = False,
    signal_fn: Callable | None = None,
    chains_per_batch: int | None = None,
    target_acceptance: float = 0.8,
) -> PosteriorSamples:
    """NUTS reference posterior of `model` for each voxel of `signals` (V, n_meas), normalised (S0 = 1).

    Args:
        sigma: noise σ of the normalised signal (scalar or (V,)); for SNR s, σ = 1/s.
        noise: "rician" or "gaussian" likelihood.
        init: starting parameters, name → (V,) / (V, 3) (e.g. `fit_nlls(...).params`); also sets the
            axis chart centres. None runs `fit_nlls` first, or, with `starts`, centres the axes on the first
            chain's start.
        starts: each chain's own starting parameters, name → (V, n_chains) / (V, n_chains, 3), in place of
            init plus jitter (e.g. draws of the network's posterior; `jitter` is then unused).
        n_chains: chains per voxel, each started at the init plus N(0, jitter²) in the chart, or at `starts`.
        num_warmup, num_samples: per chain.
        key: a typed key (`jax.random.key`) or a legacy `jax.random.PRNGKey`; None uses key(0).
        s0_marginal: the likelihood of signals divided by their own noisy b = 0 mean, their unknown scale
            integrated out (`noise.log_likelihood_s0_marginal`; σ relative to the voxel's S0), instead of
            signals at S0 = 1.
        signal_fn: (acquisition, params) → (n_meas,) the signal the likelihood uses (default `model.signal`;
            e.g. `fitting.fast_signal.fitting_signal(model, acquisition)[0]`, equal and several times cheaper
            for Watson-dispersed models). Compiled per function object.
        chains_per_batch: chains (over all voxels) advanced together by one vmapped NUTS kernel; None: 1 on a
            CPU (a vmapped step waits for the deepest tree of its batch), all of them on an accelerator.
        target_acceptance: the warm-up's target acceptance rate (`nuts_chain`).
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; expected one of {NOISE_KINDS}")
    y = np.asarray(signals, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != acquisition.n_measurements:
        raise ValueError(f"signals must be (V, {acquisition.n_measurements}), got {y.shape}")
    if noise == "rician":
        y = np.maximum(y, 1e-12)  # magnitudes are > 0; a clipped 0 would have likelihood 0
    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    key = jax.random.key(0) if key is None else key
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):  # a legacy uint32 PRNGKey: make it typed
        key = jax.random.wrap_key_data(key)
    prior = model.prior
    n_vox = len(y)
    if init is None and starts is not None:
        init = {n: np.asarray(starts[n])[:, 0] for n in chart.axis_names(prior)}
    if init is None:
        from .nlls import fit_nlls

        init = fit_nlls(model, acquisition, y, s0=None, progress=False).params
    sig = jnp.asarray(np.broadcast_to(np.asarray(sigma, np.float64), (n_vox,)), dtype)
    centres = {n: jnp.asarray(init[n], dtype) for n in chart.axis_names(prior)}
    k_jit, k_run = jax.random.split(key)
    if starts is None:
        z0 = chart.to_unconstrained(prior, {k: jnp.asarray(v, dtype) for k, v in init.items()}, centres)
        z0 = z0[:, None, :] + jitter * jax.random.normal(k_jit, (n_vox, n_chains, prior.dim), dtype)
    else:
        z0 = chain_starts(prior, starts, centres, n_vox, n_chains)
    keys = jax.random.split(k_run, n_vox * n_chains).reshape(n_vox, n_chains)

    if chains_per_batch is None:
        chains_per_batch = 1 if jax.default_backend() == "cpu" else n_vox * n_chains
    draws, info = _run(model, prior, noise, num_warmup, num_samples, acquisition, jnp.asarray(y, dtype), sig,
                       centres, z0, keys, s0_marginal, signal_fn or model.signal, int(chains_per_batch),
                       float(target_acceptance))
    draws = np.asarray(draws)
    flat = draws.reshape(n_vox, n_chains * num_samples, prior.dim)
    flat_centres = {k: jnp.repeat(v[:, None, :], flat.shape[1], axis=1) for k, v in centres.items()}
    params = chart.from_unconstrained(prior, jnp.asarray(flat), flat_centres)[0]
    params = {k: np.asarray(chart.canonical_axis(v) if v.ndim == 3 else v) for k, v in params.items()}
    return PosteriorSamples(
        params=params,
        z=draws,
        centres={k: np.asarray(v) for k, v in centres.items()},
        rhat=np.stack([split_rhat(d) for d in draws]),
        ess=np.stack([ess(d) for d in draws]),
        divergences=np.asarray(info["divergences"]).sum(axis=1),
        acceptance_rate=np.asarray(info["acceptance_rate"]).mean(axis=1),
    )


def chain_starts(prior, starts: dict, centres: dict, n_vox: int, n_chains: int) -> jax.Array:
    """Per-chain starting parameters, name → (V, n_chains) / (V, n_chains, 3), as chart points (V, n_chains, dim).

    Axes are charted about their voxel's centre (V, 3); every parameter of the prior must be given, within its
    support.
    """
    missing = set(prior.names) - set(starts)
    if missing:
        raise ValueError(f"starts lacks {sorted(missing)}")
    params = {}
    for name in prior.names:
        v = jnp.asarray(starts[name], centres[name].dtype if name in centres else jnp.result_type(float))
        if v.shape[:2] != (n_vox, n_chains):
            raise ValueError(f"starts[{name!r}] must be ({n_vox}, {n_chains}, ...) (voxels, chains), got {v.shape}")
        params[name] = v
    if not bool(jnp.all(jnp.isfinite(prior.log_prob(params)))):
        raise ValueError("starts has a point outside the prior's support")
    rep = {k: jnp.repeat(c[:, None, :], n_chains, axis=1) for k, c in centres.items()}
    return chart.to_unconstrained(prior, params, rep)


def log_posterior(model, prior, noise, acquisition, y, sigma, centres, s0_marginal: bool = False, signal_fn=None):
    """z (dim,) → log p(z | y) for one voxel (normalised signals y, σ of the normalised signal)."""
    loglik = log_likelihood_s0_marginal if s0_marginal else log_likelihood
    signal = signal_fn or model.signal

    def logdensity(z):
        params, log_det = chart.from_unconstrained(prior, z, centres)
        mu = signal(acquisition, params)
        return loglik(y, mu, sigma, noise) + prior.log_prob(params) + log_det

    return logdensity


@jax.jit(static_argnums=(0, 1, 2, 3, 4, 11, 12, 13, 14))
def _run(model, prior, noise, num_warmup, num_samples, acquisition, y, sigma, centres, z0, keys, s0_marginal, signal_fn,
         chains_per_batch, target_acceptance):
    n_vox, n_chains = keys.shape

    def chain(args):
        yv, sv, cv, zv, kv = args
        logdensity = log_posterior(model, prior, noise, acquisition, yv, sv, cv, s0_marginal, signal_fn)
        return nuts_chain(logdensity, zv, kv, num_warmup=num_warmup, num_samples=num_samples,
                          target_acceptance=target_acceptance)

    # every chain of every voxel, flattened; vmapped in batches of `chains_per_batch` (a vmapped NUTS step
    # costs the deepest tree of its batch, so on a CPU one chain at a time wastes nothing)
    rep = lambda a: jnp.repeat(a, n_chains, axis=0)
    flat = (rep(y), rep(sigma), jax.tree.map(rep, centres), z0.reshape(n_vox * n_chains, -1), keys.reshape(-1))
    out = jax.lax.map(chain, flat, batch_size=chains_per_batch)
    return jax.tree.map(lambda a: a.reshape((n_vox, n_chains) + a.shape[1:]), out)
