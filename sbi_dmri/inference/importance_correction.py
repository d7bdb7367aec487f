"""Importance-corrected posterior summaries: the network's draws, reweighted by the analytic likelihood.

The network's posterior q(θ | y) is a proposal; with the importance ratios

    w_s ∝ p(y | θ_s) p(θ_s) / q(θ_s | y),   θ_s ~ q,

self-normalised importance sampling (SNIS) turns its draws into estimates under the exact posterior
p(θ | y) of the analytic model and noise model. This is "neural importance sampling" (Dax, Green,
Gair, Pürrer, Wildberger, Macke, Buonanno & Schölkopf, Phys. Rev. Lett. 130, 171403, 2023): the
network does the amortized search, the likelihood removes its residual bias and miscalibration. It
works where q covers p (forward-KL training makes q mass-covering) and is judged per voxel by the
Pareto k̂ of the same weights (`diagnostics.importance`): above 0.7 the corrected estimate is not
trusted and the network's own summaries are kept (`inference.engine`).

Weights are truncated at w̄ √S (S draws, w̄ their mean) before normalisation (Ionides, "Truncated
importance sampling", J. Comput. Graph. Stat. 17:295, 2008): a single huge ratio cannot take over the
estimate; the bias this adds vanishes as S grows.

Summaries match `networks.posterior`: scalars get the weighted mean, sd and quantiles (of the weighted
empirical CDF, interpolated between mid-points); axes the principal eigenvector of the weighted
scatter Σ w n nᵀ, and the weighted RMS and quantiles of the angle to it (degrees).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def truncated_weights(log_weights: jax.Array, n_draws=None) -> jax.Array:
    """(C, S) log ratios (−inf allowed) → (C, S) normalised weights, truncated at mean · √n.

    n_draws: each row's count of draws, a number or (C,) (default S). A row that `pad_with_redraws` padded
    with −inf columns passes its own count, so its cap is that of its own draws, as if unpadded.
    A row whose log weights are all −inf gets uniform weights (the caller flags it: its k̂ is +inf).
    """
    S = log_weights.shape[-1]
    n = jnp.reshape(jnp.asarray(S if n_draws is None else n_draws, log_weights.dtype), (-1, 1))
    dead = jnp.all(log_weights == -jnp.inf, axis=-1, keepdims=True)
    lw = jnp.where(dead, 0.0, log_weights)
    w = jnp.exp(lw - jnp.max(lw, axis=-1, keepdims=True))
    w = w / jnp.sum(w, axis=-1, keepdims=True)
    w = jnp.minimum(w, jnp.sqrt(n) / n)  # w̄ = 1/n after normalisation
    return w / jnp.sum(w, axis=-1, keepdims=True)


def corrected_weights(log_weights: jax.Array, n_draws=None) -> jax.Array:
    """(C, S) log weights of `adaptive_importance` → (C, S) normalised weights of the corrected posterior.

    `truncated_weights`, except in a voxel where every weight is zero (k̂ = +inf): there equal weights on
    the network's own draws, i.e. the network's posterior: the first max(n // 2, 1) of the row,
    `adaptive_importance`'s stage 1. n_draws: each row's count of draws, a number or (C,) (default S;
    rows padded by `pad_with_redraws` pass the count it returns).
    """
    S = log_weights.shape[-1]
    n = jnp.reshape(jnp.asarray(S if n_draws is None else n_draws), (-1, 1))
    own = (jnp.arange(S)[None, :] < jnp.maximum(n // 2, 1)).astype(log_weights.dtype)
    dead = jnp.all(log_weights == -jnp.inf, axis=-1, keepdims=True)
    return jnp.where(dead, own / jnp.sum(own, axis=-1, keepdims=True), truncated_weights(log_weights, n))


def effective_sample_size(weights: jax.Array) -> jax.Array:
    """(C, S) normalised weights → (C,) Kish effective sample size 1 / Σ w² (draws)."""
    return 1.0 / jnp.sum(weights**2, axis=-1)


#: `min_ess` redraws (`inference.engine.infer_voxels`, the model card): a voxel whose corrected weights have
#: fewer effective draws than asked is drawn again, afresh, with REDRAW_FACTOR times the draws.
REDRAW_FACTOR = 4
#: Folded into the first draws' key for the redraws.
REDRAW_KEY = 7919


def needs_redraw(log_weights, min_ess: float) -> np.ndarray:
    """(C,) bool: the voxels of (C, S) log weights with effective sample size below `min_ess`, or none at all
    (every weight zero); none when min_ess ≤ 0. The redraw is independent of the first draws, so choosing
    voxels by them biases nothing: each voxel's result is still an importance estimate of its own posterior."""
    if min_ess <= 0:
        return np.zeros(np.shape(log_weights)[0], bool)
    lw = jnp.asarray(log_weights)
    alive = np.asarray(jnp.any(lw > -jnp.inf, axis=-1))
    return ~alive | (np.asarray(effective_sample_size(truncated_weights(lw))) < min_ess)


def pad_with_redraws(draws, log_weights, redrawn, redraw, n_draws: int):
    """Replace the `redrawn` rows of a run of `n_draws` by REDRAW_FACTOR × n_draws fresh draws, padding the others.

    draws: a pytree of (C, n_draws, ...) arrays; log_weights: (C, n_draws); redrawn: (C,) bool; redraw(n) →
    (draws, log weights) of the redrawn rows with n draws each. Returns (draws (C, S, ...), log weights (C, S),
    n (C,)): S = REDRAW_FACTOR · n_draws if any row is redrawn (the kept rows padded with copies of their first
    draw at zero weight), and n each row's count of its own draws, for `corrected_weights`.
    """
    draws = jax.tree.map(np.asarray, draws)
    lw = np.asarray(log_weights)
    C = lw.shape[0]
    n = np.full(C, n_draws)
    if not np.any(redrawn):
        return draws, lw, n
    n2 = REDRAW_FACTOR * n_draws
    d2, lw2 = redraw(n2)

    def put(a, b):
        out = np.concatenate([a, np.repeat(a[:, :1], n2 - n_draws, axis=1)], axis=1)
        out[redrawn] = b
        return out

    lw_out = np.concatenate([lw, np.full((C, n2 - n_draws), -np.inf, lw.dtype)], axis=1)
    lw_out[redrawn] = np.asarray(lw2)
    n[redrawn] = n2
    return jax.tree.map(put, draws, jax.tree.map(np.asarray, d2)), lw_out, n


def weighted_quantile(values: jax.Array, weights: jax.Array, q: jax.Array) -> jax.Array:
    """(C, S) values, (C, S) normalised weights, (Q,) levels → (Q, C) quantiles of the weighted CDF.

    The CDF puts each draw's mass at its mid-point (cumulative weight minus half its own weight) and is
    interpolated linearly between them; with equal weights this is the Hazen quantile.
    """
    order = jnp.argsort(values, axis=-1)
    v = jnp.take_along_axis(values, order, axis=-1)
    w = jnp.take_along_axis(weights, order, axis=-1)
    cdf = jnp.cumsum(w, axis=-1) - 0.5 * w
    return jax.vmap(lambda c, x: jnp.interp(q, c, x), out_axes=1)(cdf, v)


def weighted_summaries(params: dict, weights: jax.Array, axis_names, q: jax.Array) -> dict:
    """{"mean", "std", "quantiles"}: name → (C,), (C, 3) for axes, and (Q, C) quantiles (module docstring).

    params: name → (C, S) scalars or (C, S, 3) unit axes; weights: (C, S) normalised.
    """
    from ..networks.posterior import angles_deg

    out = {"mean": {}, "std": {}, "quantiles": {}}
    for name, v in params.items():
        if name in axis_names:
            scatter = jnp.einsum("cs,csi,csj->cij", weights, v, v)
            m = jnp.linalg.eigh(scatter)[1][..., :, 2]
            m = jnp.where(m[..., 2:3] < 0, -m, m)
            ang = angles_deg(v, m)
            out["mean"][name] = m
            out["std"][name] = jnp.sqrt(jnp.sum(weights * ang**2, axis=-1))
            out["quantiles"][name] = weighted_quantile(ang, weights, q)
        else:
            m = jnp.sum(weights * v, axis=-1)
            out["mean"][name] = m
            out["std"][name] = jnp.sqrt(jnp.sum(weights * (v - m[:, None]) ** 2, axis=-1))
            out["quantiles"][name] = weighted_quantile(v, weights, q)
    return out


def systematic_resample(key: jax.Array, weights: jax.Array, n: int) -> jax.Array:
    """(C, S) normalised weights → (C, n) draw indices, systematic resampling (one uniform per row).

    Equal-weight draws from the reweighted posterior, for diagnostics that take draws (SBC, coverage,
    TARP, C2ST). Systematic resampling has the lowest variance of the standard schemes (Douc, Cappé &
    Moulines, ISPA 2005).
    """
    C, S = weights.shape
    u = (jax.random.uniform(key, (C, 1)) + jnp.arange(n)[None, :]) / n
    cdf = jnp.cumsum(weights, axis=-1)
    cdf = cdf / cdf[:, -1:]
    idx = jax.vmap(lambda c, uu: jnp.searchsorted(c, uu, side="left"))(cdf, u)
    return jnp.minimum(idx, S - 1)


def likelihood_signal(model, acquisition):
    """The signal function (acquisition, params) → (M,) the likelihood evaluates: for NODDI-like models the
    merged Watson convolution the NLLS optimiser uses (equal to `model.signal` to ≤ 5e-8, several times
    cheaper). Call it outside jit: it reads the largest b-value of the concrete `acquisition`."""
    from ..fitting.fast_signal import fitting_signal

    return fitting_signal(model, acquisition)[0]


def log_target(context_batch: dict, theta: jax.Array, space, acquisition, sigma: jax.Array, noise_kind: str,
               params: dict | None = None, signal_fn=None) -> jax.Array:
    """(C, S) log p(y | θ) + log p_θ(θ), the unnormalised posterior in θ space, for draws θ (C, S, D).

    p(y | θ) is the exact density of signals divided by their own noisy b = 0 mean, the unknown S0 scale
    integrated out (`noise.log_likelihood_s0_marginal`).

    context_batch: the network batch of the C voxels (its "signals" are S divided by their b = 0 mean,
    (C, M), and "frame" the DTI frames); sigma: (C,) noise σ relative to the voxel's S0 (1/SNR, as the
    simulators and the network's training define the SNR); noise_kind: "rician" or "gaussian"; signal_fn: the model's
    signal function (default `space.model.signal`; `likelihood_signal` gives the faster equal one).
    """
    from ..noise import log_likelihood_s0_marginal

    frame = context_batch["frame"][:, None]
    params = space.from_theta(theta, frame) if params is None else params
    signal = jax.vmap(jax.vmap(signal_fn or space.model.signal, in_axes=(None, 0)), in_axes=(None, 0))
    mu = signal(acquisition, params)  # (C, S, M) S/S0 at each draw
    # the signals were divided by their own noisy b = 0 mean: their scale is unknown near 1, and integrated out
    loglik = log_likelihood_s0_marginal(context_batch["signals"][:, None, :], mu, sigma[:, None, None], noise_kind)
    return loglik + space.prior_log_prob_theta(theta, frame)


def _clean(lw):
    # NaN (a signal the likelihood cannot score) → zero weight; +inf clipped to the largest float32
    return jnp.where(jnp.isnan(lw), -jnp.inf, jnp.minimum(lw, 3e38))


def log_importance_weights(network, context, theta: jax.Array, batch: dict, space, acquisition, sigma: jax.Array,
                           noise_kind: str, params: dict | None = None, signal_fn=None) -> jax.Array:
    """(C, S) log w_s = log p(y | θ_s) + log p_θ(θ_s) − log q(θ_s | y) for draws θ (C, S, D) of the network."""
    lt = log_target(batch, theta, space, acquisition, sigma, noise_kind, params, signal_fn)
    return _clean(lt - network.log_prob(context, theta))


#: Stage-2 Gaussian: weighted covariance × INFLATE², plus FLOOR × the network's own covariance.
INFLATE, FLOOR = 1.5, 0.01


def adaptive_importance(sample, log_q, log_target_fn, key, n_draws: int) -> tuple[jax.Array, jax.Array]:
    """Two-stage importance sampling: ((C, n_draws, D) draws in θ space, (C, n_draws) log weights).

    sample(key, n) → ((C, n, D) draws of the network q, (C, n) their log q); log_q(θ) and
    log_target_fn(θ) → (C, S) for θ (C, S, D): the network's log density and the unnormalised log
    posterior (`log_target`).

    Stage 1: n₁ = n_draws/2 draws of the network q. Stage 2: n₂ = n_draws − n₁ draws of a Gaussian g
    in θ space fitted to the stage-1 weighted draws (mean; covariance × INFLATE² + FLOOR × the
    unweighted covariance of q's draws, so a collapsed stage 1 cannot make g degenerate). All draws are
    weighted by the balance heuristic of multiple importance sampling (Veach & Guibas, SIGGRAPH 1995),
    w = p / ((n₁ q + n₂ g) / n), which stays valid wherever either proposal covers the posterior: q
    keeps the global search (several modes, heavy tails), g supplies draws where the posterior is much
    narrower than the network's — the case at high SNR, where the networks are calibrated but 3–14×
    wider than the exact posterior. One adaptation step of population Monte Carlo (Cappé, Guillin,
    Marin & Robert, J. Comput. Graph. Stat. 13:907, 2004).
    """
    n1 = max(n_draws // 2, 1)
    n2 = n_draws - n1
    k1, k2 = jax.random.split(key)
    theta1, logq1 = sample(k1, n1)  # (C, n1, D), (C, n1)
    lt1 = log_target_fn(theta1)
    w1 = truncated_weights(_clean(lt1 - logq1))
    D = theta1.shape[-1]
    mu = jnp.einsum("cs,csd->cd", w1, theta1)
    d = theta1 - mu[:, None]
    cov_w = jnp.einsum("cs,csi,csj->cij", w1, d, d)
    dq = theta1 - jnp.mean(theta1, axis=1, keepdims=True)
    cov_q = jnp.einsum("csi,csj->cij", dq, dq) / n1
    cov = INFLATE**2 * cov_w + FLOOR * cov_q + 1e-6 * jnp.eye(D)[None]
    chol = jnp.linalg.cholesky(cov)
    theta2 = mu[:, None] + jnp.einsum("cij,csj->csi", chol, jax.random.normal(k2, (theta1.shape[0], n2, D)))
    theta = jnp.concatenate([theta1, theta2], axis=1)
    logq = jnp.concatenate([logq1, log_q(theta2)], axis=1)
    lt = jnp.concatenate([lt1, log_target_fn(theta2)], axis=1)
    # log N(θ; μ, cov) via the Cholesky factor
    chol_inv = jax.scipy.linalg.solve_triangular(chol, jnp.broadcast_to(jnp.eye(D), chol.shape), lower=True)
    z = jnp.einsum("cij,csj->csi", chol_inv, theta - mu[:, None])
    logdet = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    logg = -0.5 * jnp.sum(z**2, axis=-1) - logdet[:, None] - 0.5 * D * jnp.log(2 * jnp.pi)
    n = n1 + n2
    log_mix = jnp.logaddexp(jnp.log(n1 / n) + logq, jnp.log(n2 / n) + logg)
    return theta, _clean(lt - log_mix)


def network_importance(network, context, batch: dict, space, acquisition, sigma: jax.Array, noise_kind: str, key,
                       n_draws: int, signal_fn=None) -> tuple[jax.Array, jax.Array]:
    """`adaptive_importance` for a network (`AmortizedPosterior`) and the analytic model of `space`."""
    return adaptive_importance(lambda k, n: network.sample_and_log_prob(context, k, n),
                               lambda t: network.log_prob(context, t),
                               lambda t: log_target(batch, t, space, acquisition, sigma, noise_kind, signal_fn=signal_fn),
                               key, n_draws)
