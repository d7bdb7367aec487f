"""Voxelwise non-linear least squares.

For every voxel:

1. normalise by S0 (mean of the b0 measurements, or fitted as a free log-scale factor);
2. seed each axis from the diffusion tensor and score a fixed set of prior draws (brute force,
   `initialisation.py`); for models whose signal is linear in the simplex fractions (SANDI,
   ball_stick, AxCaliber) each draw gets its best fractions by linear least squares first;
3. refine the best `n_starts` with Levenberg–Marquardt on the residuals y − S0·E(θ)
   (`levenberg_marquardt.py`, Marquardt-scaled), in the unconstrained chart of the model's prior
   (`chart.py`), so bounds and the fraction simplex hold by construction and axes are charted about
   their seed, away from the chart's singular equator (the signal iterated is
   `fast_signal.fitting_signal(model)`: for Watson models a merged, cheaper convolution equal to the
   model's within 1e-8; box coordinates clipped at ±CHART_LIMIT);
4. refit, from further starts, the voxels whose loss stands out from the batch's (wrong basins);
5. for noise="rician", continue with optimistix BFGS on the Rician negative log-likelihood
   (magnitude data are biased upwards at low SNR, which least squares ignores).

Voxels are vmapped, processed in fixed-size padded chunks (one compilation per chunk size), and
each chunk is sharded over a 1-D mesh of the local devices.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ..acquisition import Acquisition
from ..models.base import Model
from ..noise import NOISE_KINDS, rician_log_likelihood
from ..priors import AxisUniform
from . import chart
from .fast_signal import fitting_signal
from .initialisation import axis_centres, best_fractions, candidate_points, dti_design, linear_fractions
from .levenberg_marquardt import levenberg_marquardt
from .restarts import (POLISH_STEPS_FACTOR, RESTART_CANDIDATE_FACTOR, RESTART_ROUND, restart_high_loss,
                       stands_out)
from .result import FitResult

S0Mode = Literal["b0", "fit"] | None

#: Incremented each time the chunk function is traced (tests assert no recompilation per chunk).
TRACE_COUNT = {"chunk": 0}

#: Step budget of the first pass over every voxel (then the stragglers, see `fit_nlls`). A restart
#: (fresh trust region) often finishes a voxel whose step size had collapsed, so a short first pass
#: costs little: NODDI at SNR 50, 20 steps gave 1.26× the speed of 30 with the same RMSE.
FIRST_PASS_STEPS = 20
#: Default rtol = atol on the chart coordinates in float32: a change of 1e-4 in a logit is a relative
#: change below 1e-4 in the parameter, far below the noise at any usable SNR (1e-5 took 1.7× the
#: steps for NODDI at SNR 50 with the same RMSE to 4 digits; benchmarks/results/fitting.md).
FLOAT32_TOL = 1e-4
#: Box, log-box and simplex chart coordinates are clipped to ±this (a fraction ≥ 4.5e-5 of its range,
#: or of the last fraction): when the least-squares optimum lies beyond a bound (NODDI's f_iso → 0
#: with noise) the logit otherwise runs off towards −∞ in ever smaller steps and never meets the
#: step tolerance; clipped, the loss is flat past the limit and the voxel converges there
#: (tests/fitting/test_fast_signal.py). With the restart tiers the speed effect is nil (measured).
CHART_LIMIT = 10.0


def fit_nlls(
    model: Model,
    acquisition: Acquisition,
    signals,
    *,
    mask=None,
    noise: Literal["gaussian", "rician"] = "gaussian",
    sigma=None,
    s0: S0Mode = "b0",
    n_starts: int = 1,
    n_candidates: int = 128,
    n_restarts: int = 32,
    chunk_size: int = 1024,
    max_steps: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    progress: bool = True,
    key=None,
) -> FitResult:
    """Fit `model` to every voxel of `signals`.

    Args:
        model: the signal model (its prior defines the bounds and the chart).
        acquisition: the protocol, n_meas measurements.
        signals: (..., n_meas) measured signals: raw (s0="b0" or "fit") or normalised (s0=None).
        mask: boolean (...,), voxels to fit; default all.
        noise: "gaussian" (least squares) or "rician" (least squares, then the Rician likelihood).
        sigma: noise σ in the unit of `signals` (scalar or (...,)); Rician only. None estimates it per
            voxel from the least-squares residuals, √(Σr² / (n_meas − n_free)).
        s0: "b0" (S0 = mean of the b ≈ 0 measurements), "fit" (a free scale factor, started from
            the b0 mean, or the largest signal without b0) or None (signals already divided by S0).
        n_starts: number of best brute-force candidates refined in the first stage; the lowest final
            loss wins. One by default: with the Marquardt-scaled LM, variable-projection starts and
            the restarts for voxels whose loss stands out, a second start changed nothing measurable
            (ball_stick noise-free 2000/2000 recovered with one start, also without restarts; NODDI
            at SNR 50 equal RMSE; benchmarks/results/fitting.md) and cost 1.6× the time (NODDI).
        n_candidates: prior draws scored per voxel before refining.
        n_restarts: after the first LM stage, voxels whose loss (in the input's units, i.e. × S0²)
            is above RESTART_LOSS_FACTOR × the lower quartile of all fitted voxels' (restarts.py; and above the
            working precision's floor) are refitted
            from up to this many further starts: the best of RESTART_CANDIDATE_FACTOR × n_candidates
            fresh prior draws scored by brute force, in rounds of RESTART_ROUND (a voxel leaves when
            its loss is low enough or a round did not lower it); the lowest loss wins. 0 disables it. Needed by models with several basins of similar brute-force
            score (SANDI; benchmarks/results/fitting.md); costs little where few voxels qualify.
        chunk_size: voxels per compiled batch (rounded up to a multiple of the device count).
        max_steps: step budget of the last pass of each optimiser (passes: FIRST_PASS_STEPS on every
            voxel, then twice that on the ones not stopped, then max_steps on the few left, each pass a
            restart from the previous end point); a voxel that exhausts it is flagged not converged.
        rtol, atol: optimiser tolerances on the chart coordinates; default 1e-10 in float64, 1e-4 in float32.
        progress: show a tqdm bar over chunks.
        key: PRNG key for the candidate draws (fixed default, so fits are reproducible).

    Returns:
        `FitResult`; voxels outside the mask, or with non-finite signals, or S0 ≤ 0, are NaN and
        flagged `fitted = converged = False`.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"unknown noise {noise!r}; expected one of {NOISE_KINDS}")
    if s0 not in ("b0", "fit", None):
        raise ValueError(f"s0 must be 'b0', 'fit' or None, got {s0!r}")
    y = np.asarray(signals, dtype=np.float64)
    n_meas = acquisition.n_measurements
    if y.ndim < 1 or y.shape[-1] != n_meas:
        raise ValueError(f"signals have shape {y.shape}; the last axis must be the {n_meas} measurements")
    lead = y.shape[:-1]
    y = y.reshape(-1, n_meas)
    m = np.ones(len(y), bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and m.shape != lead:
        raise ValueError(f"mask has shape {m.shape}, expected {lead} (the signals without their last axis)")
    m = m.reshape(-1)
    if not m.any():
        raise ValueError("the mask is empty: no voxel to fit")

    s0_est = _s0_estimate(y, acquisition, s0)
    with np.errstate(invalid="ignore"):
        fitted = m & np.all(np.isfinite(y), axis=1) & np.isfinite(s0_est) & (s0_est > 0)
    idx = np.flatnonzero(fitted)
    sig_n = _normalised_sigma(sigma, noise, lead, s0_est)

    dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    tol = (1e-10 if dtype == jnp.float64 else FLOAT32_TOL)
    n_restarts = max(int(n_restarts), 0)
    opts = _Options(model, acquisition, noise, s0 == "fit", int(n_starts), n_restarts, int(max_steps),
                    float(rtol if rtol is not None else tol), float(atol if atol is not None else tol))
    if n_starts < 1 or n_starts > n_candidates or n_restarts > RESTART_CANDIDATE_FACTOR * n_candidates:
        raise ValueError(f"need 1 ≤ n_starts ≤ n_candidates and n_restarts ≤ {RESTART_CANDIDATE_FACTOR} "
                         f"n_candidates, got {n_starts}, {n_restarts} and {n_candidates}")
    key = jax.random.key(0) if key is None else key
    z_cand = candidate_points(model.prior, n_candidates, key).astype(dtype)
    z_more = candidate_points(model.prior, RESTART_CANDIDATE_FACTOR * n_candidates,
                              jax.random.fold_in(key, 1)).astype(dtype) if n_restarts > 0 else None
    pinv = dti_design(acquisition)
    pinv = None if pinv is None else jnp.asarray(pinv, dtype)

    n_dev = jax.local_device_count()
    # Auto axis: the voxel split propagates through vmap without explicit out-shardings in the solvers.
    mesh = jax.make_mesh((n_dev,), ("voxels",), axis_types=(jax.sharding.AxisType.Auto,))
    run = _ChunkRunner(NamedSharding(mesh, P("voxels")), n_dev, dtype, progress, model.name)
    chunk = run.round(min(chunk_size, len(idx)))
    # vmap runs a chunk until its slowest voxel stops, so every stage runs with a short step budget
    # on all voxels, then on the ~10 % that did not stop (compacted, chunk/8, twice the budget), then
    # on the few left (chunk/32, the full budget): the long tail no longer holds up 128 voxels.
    first = min(max_steps, FIRST_PASS_STEPS)
    tiers = [(run.round(max(chunk // 8, 1)), min(max_steps, 2 * first))]
    if 2 * first < max_steps:
        tiers.append((run.round(max(chunk // 32, 1)), max_steps))

    yn = y[idx] / s0_est[idx, None]
    st = run(lambda yc: _lm_first(opts, acquisition, pinv, z_cand, yc, first), [yn], chunk, "brute force + LM")
    _continue_stragglers(run, st, tiers, lambda budget: (lambda yc, zc, cc: _lm_continue(opts, acquisition, yc, zc, cc, budget)),
                         lambda r: (yn[r], st["z"][r], {k: v[r] for k, v in st["centres"].items()}))
    if n_restarts > 0:
        size = min(RESTART_ROUND, n_restarts)
        restart_high_loss(run, st, yn, s0_est[idx] ** 2, chunk, n_restarts, size, dtype, n_meas,
                           lambda first: (lambda yc: _lm_restart(opts, acquisition, pinv, z_more, yc, max_steps,
                                                                 first, size)))
        # Voxels whose best fit still stands out and has not stopped are in a flat valley: a long
        # last pass (SANDI, noise-free: 2 of 3 such voxels end at the truth within 1000 steps).
        _continue_stragglers(run, st, [(run.round(max(chunk // 32, 1)), POLISH_STEPS_FACTOR * max_steps)],
                             lambda budget: (lambda yc, zc, cc: _lm_continue(opts, acquisition, yc, zc, cc, budget)),
                             lambda r: (yn[r], st["z"][r], {k: v[r] for k, v in st["centres"].items()}),
                             among=stands_out(st["loss"], s0_est[idx] ** 2, dtype, n_meas))
    sig_used = np.full(len(idx), np.nan)
    if noise == "rician":
        n_free = st["z"].shape[1]
        est = np.sqrt(st["loss"] / max(n_meas - n_free, 1))
        sig_used = np.where(np.isnan(sig_n[idx]), est, sig_n[idx])
        # A perfect least-squares fit leaves σ = 0; keep the likelihood finite.
        sig_used = np.maximum(sig_used, 1e-6)
        fn = lambda budget: (lambda yc, sc, zc, cc: _rician(opts, acquisition, yc, sc, zc, cc, budget))
        args = lambda r: (yn[r], sig_used[r], st["z"][r], {k: v[r] for k, v in st["centres"].items()})
        st.update(run(fn(first), args(slice(None)), chunk, "Rician likelihood"))
        _continue_stragglers(run, st, tiers, fn, args)
    prm = run(lambda zc, cc: _to_params(opts, zc, cc), [st["z"], st["centres"]], chunk, None)

    out = _empty_outputs(model, len(y))
    for k, v in prm["params"].items():
        out["params"][k][idx] = v
    out["s0_factor"][idx] = prm["s0_factor"]
    out["sigma"][idx] = sig_used
    for k in ("loss", "converged", "num_steps"):
        out[k][idx] = st[k]
    restarted = np.zeros(len(y), bool)
    restarted[idx] = st.get("restarted", False)

    params = {k: v.reshape(lead + v.shape[1:]) for k, v in out["params"].items()}
    s0_out = np.where(fitted, s0_est * out["s0_factor"], np.nan)
    out["loss"][~fitted] = np.nan
    return FitResult(
        params=params,
        loss=out["loss"].reshape(lead),
        converged=out["converged"].reshape(lead),
        fitted=fitted.reshape(lead),
        s0=s0_out.reshape(lead),
        sigma=None if noise == "gaussian" else out["sigma"].reshape(lead),
        num_steps=out["num_steps"].reshape(lead),
        restarted=restarted.reshape(lead),
    )


class _Options:
    """Static configuration of the compiled chunk function (hashed by value, the model by identity)."""

    def __init__(self, model, acquisition, noise, fit_s0, n_starts, n_restarts, max_steps, rtol, atol):
        self.model, self.noise, self.fit_s0 = model, noise, fit_s0
        # Built once, outside tracing (model.prior constructs a new Prior on every access).
        self.prior = model.prior
        # The signal the optimiser iterates (fast_signal.py); its form depends on the largest b-value.
        self.signal, form = fitting_signal(model, acquisition)
        self.n_starts, self.max_steps, self.rtol, self.atol = n_starts, max_steps, rtol, atol
        self.n_restarts = n_restarts
        # Chart slice of the simplex fractions when the signal is linear in them (variable projection
        # in the brute force), else None.
        self.fraction_slice = linear_fractions(model, acquisition)
        # Chart coordinates that are clipped to ±CHART_LIMIT: all but the axes' (and the S0 scale's).
        boxed = np.zeros(self.prior.dim + int(fit_s0), bool)
        for f, sl in zip(self.prior.factors, self.prior.slices):
            boxed[sl] = not isinstance(f, AxisUniform)
        self.boxed = tuple(bool(b) for b in boxed)
        self._key = (id(model), form, noise, fit_s0, n_starts, n_restarts, max_steps, rtol, atol)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Options) and self._key == other._key and self.model is other.model


def _s0_estimate(y: np.ndarray, acquisition: Acquisition, s0: S0Mode) -> np.ndarray:
    if s0 is None:
        return np.ones(len(y))
    b0 = np.asarray(acquisition.b0_mask)
    if b0.any():
        return y[:, b0].mean(axis=1)
    if s0 == "b0":
        raise ValueError("s0='b0' needs b ≈ 0 measurements; this acquisition has none (use s0='fit')")
    return np.max(y, axis=1)


def _normalised_sigma(sigma, noise, lead, s0_est) -> np.ndarray:
    """σ / S0 per voxel (NaN: estimate it from the least-squares residuals)."""
    if noise == "gaussian" or sigma is None:
        return np.full(len(s0_est), np.nan)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), lead).reshape(-1)
    if np.any(s <= 0):
        raise ValueError("sigma must be > 0 (in the unit of the signals)")
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / s0_est


def _empty_outputs(model, n):
    params = {p.name: np.full((n, 3) if p.kind == "orientation" else (n,), np.nan) for p in model.parameters}
    return {"params": params, "loss": np.full(n, np.nan), "converged": np.zeros(n, bool),
            "s0_factor": np.full(n, np.nan), "sigma": np.full(n, np.nan), "num_steps": np.zeros(n, int)}


class _ChunkRunner:
    """Applies a jitted batch function to host arrays in fixed-size, padded, device-sharded chunks."""

    def __init__(self, sharding, n_dev, dtype, progress, name):
        self.sharding, self.n_dev, self.dtype, self.progress, self.name = sharding, n_dev, dtype, progress, name

    def round(self, n: int) -> int:
        return int(math.ceil(max(n, 1) / self.n_dev) * self.n_dev)

    def _put(self, x, rows):
        x = x[rows]
        return jax.device_put(jnp.asarray(x, self.dtype if x.dtype.kind == "f" else x.dtype), self.sharding)

    def __call__(self, fn, args, chunk, desc):
        n = len(jax.tree.leaves(args)[0])
        starts = range(0, n, chunk)
        bar = tqdm(starts, desc=f"{self.name}: {desc}", disable=not self.progress or desc is None or len(starts) < 2)
        parts, pending = [], None
        for start in bar:
            rows = np.arange(start, min(start + chunk, n))
            pad = np.concatenate([rows, np.full(chunk - len(rows), rows[0])])
            res = fn(*jax.tree.map(lambda x: self._put(x, pad), args))  # dispatched asynchronously
            if pending is not None:
                parts.append(jax.device_get(pending[1]))
                parts[-1] = jax.tree.map(lambda v, k=len(pending[0]): v[:k], parts[-1])
            pending = (rows, res)
        parts.append(jax.tree.map(lambda v, k=len(pending[0]): v[:k], jax.device_get(pending[1])))
        return jax.tree.map(lambda *v: np.concatenate(v), *parts)


def _continue_stragglers(run, st, tiers, fn_of_budget, args_of_rows, among=None):
    """For each (chunk, budget) tier, re-run `fn_of_budget(budget)` on the voxels not yet stopped
    (and in the boolean mask `among`, if given)."""
    for chunk, budget in tiers:
        rows = np.flatnonzero(~st["converged"] & (True if among is None else among))
        if len(rows) == 0:
            return
        res = run(fn_of_budget(budget), args_of_rows(rows), chunk, None)
        st["z"][rows] = res["z"]
        st["loss"][rows] = res["loss"]
        st["converged"][rows] = res["converged"]
        st["num_steps"][rows] = st["num_steps"][rows] + res["num_steps"]


def _clip_chart(opts, z):
    """z (..., dim[+1]) with the box/simplex coordinates clipped to ±CHART_LIMIT (see there)."""
    boxed = jnp.asarray(opts.boxed)
    return jnp.where(boxed, jnp.clip(z, -CHART_LIMIT, CHART_LIMIT), z)


def _predictor(opts, acquisition, centres):
    prior, dim = opts.prior, opts.prior.dim

    def predict(z):
        z = _clip_chart(opts, z)
        e = opts.signal(acquisition, chart.from_unconstrained(prior, z[:dim], centres)[0])
        return jnp.exp(z[dim]) * e if opts.fit_s0 else e

    return predict


def _lm(opts, acquisition, y, z0, centres, budget):
    predict = _predictor(opts, acquisition, centres)
    z, _, converged, steps = levenberg_marquardt(lambda z: y - predict(z), z0, max_steps=budget,
                                                 rtol=opts.rtol, atol=opts.atol)
    z = _clip_chart(opts, z)
    loss = jnp.sum((y - predict(z)) ** 2)
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
    return {"z": z, "loss": loss, "converged": converged & jnp.isfinite(loss), "num_steps": steps}


def _candidate_starts(opts: _Options, acquisition, z_cand, yv, cv):
    """(z_start (N, dim[+1]), sse (N,)) of every candidate for voxel signal yv, axes at centres cv.

    Models whose signal is linear in their simplex fractions (`initialisation.linear_fractions`):
    each candidate keeps its other parameters and gets the fractions (and S0) that fit yv best,
    by linear least squares (variable projection, Golub & Pereyra, SIAM J Numer Anal 10:413,
    1973). The brute force then searches only the non-linear parameters: with SANDI's 3 diffusivity
    and radius parameters and 2 fractions, this is what finds the right basin among several."""
    prior = opts.prior

    def candidate_params(z):
        # Every candidate's axis is its chart centre (axis coordinates 0): passing the centres
        # themselves keeps the axis unbatched in this vmap, so whatever depends on the axis
        # alone (ĝ·μ and its Legendre polynomials for Watson models) is computed once per voxel.
        return {**chart.from_unconstrained(prior, z, cv)[0], **cv}

    if opts.fraction_slice is not None:
        cols = jax.vmap(lambda z: jnp.stack(list(opts.model.compartment_signals(acquisition, candidate_params(z)).values()),
                                            axis=-1))(z_cand)  # (N, n_meas, K)
        frac, scale = best_fractions(cols, yv, opts.fit_s0)
        z_start = z_cand.at[:, opts.fraction_slice].set(jnp.log(frac[:, :-1]) - jnp.log(frac[:, -1:]))
        e_cand = jnp.einsum("nmk,nk->nm", cols, frac)
    else:
        e_cand = jax.vmap(lambda z: opts.signal(acquisition, candidate_params(z)))(z_cand)
        z_start = z_cand
        scale = None
        if opts.fit_s0:
            # Best scale of each candidate in closed form: S0 = ⟨y, E⟩ / ⟨E, E⟩.
            scale = jnp.sum(e_cand * yv[None, :], axis=1) / jnp.maximum(jnp.sum(e_cand**2, axis=1), 1e-30)
    if opts.fit_s0:
        scale = jnp.clip(scale, 1e-3, 1e3)
        z_start = jnp.concatenate([z_start, jnp.log(scale)[:, None]], axis=1)
        e_cand = scale[:, None] * e_cand
    sse = jnp.sum((yv[None, :] - e_cand) ** 2, axis=1)
    return z_start, jnp.where(jnp.isfinite(sse), sse, jnp.inf)


def _scored_starts(opts: _Options, acquisition, pinv, z_cand, yv, cv, av, n_ranked: int, first, n: int):
    """Brute force for one voxel: the `n` candidates ranked first … first + n − 1 by their loss.

    Tensor seeds `cv` (and the alternative `av`), every candidate of `z_cand` scored at the better
    of the two; returns (z_start (n, dim[+1]), centres). `first` may be traced (first + n ≤ n_ranked)."""
    def score(cv):
        return _candidate_starts(opts, acquisition, z_cand, yv, cv)

    z_start, sse = score(cv)
    if cv:  # models with an axis: keep the better of the two axis seeds
        z_alt, sse_alt = score(av)
        use_alt = jnp.min(sse_alt) < jnp.min(sse)
        cv = jax.tree.map(lambda a, b: jnp.where(use_alt, b, a), cv, av)
        z_start, sse = jnp.where(use_alt, z_alt, z_start), jnp.where(use_alt, sse_alt, sse)
    _, best = jax.lax.top_k(-sse, n_ranked)
    return z_start[jax.lax.dynamic_slice_in_dim(best, first, n)], cv


def _best_of_starts(opts, acquisition, yv, z_starts, cv, budget):
    res = jax.vmap(lambda z0: _lm(opts, acquisition, yv, z0, cv, budget))(z_starts)
    i = jnp.argmin(res["loss"])
    res = jax.tree.map(lambda v: v[i], res)
    res["centres"] = cv
    return res


@jax.jit(static_argnums=0)
def _lm_first(opts: _Options, acquisition, pinv, z_cand, y, budget):
    """Tensor seeds, brute force over `z_cand`, then LM from the best `n_starts`; y (C, n_meas)."""
    TRACE_COUNT["chunk"] += 1
    centres, alternative = axis_centres(opts.prior, pinv, y)

    def voxel(yv, cv, av):
        z_starts, cv = _scored_starts(opts, acquisition, pinv, z_cand, yv, cv, av, opts.n_starts, 0, opts.n_starts)
        return _best_of_starts(opts, acquisition, yv, z_starts, cv, budget)

    return jax.vmap(voxel)(y, centres, alternative)


@jax.jit(static_argnums=(0, 7))
def _lm_restart(opts: _Options, acquisition, pinv, z_cand, y, budget, first, n_more):
    """LM from the candidates of `z_cand` (the restart set) ranked first … first + n_more − 1 by the
    brute force; y (C, n_meas), `first` traced so that every round shares one compilation."""
    centres, alternative = axis_centres(opts.prior, pinv, y)

    def voxel(yv, cv, av):
        z_starts, cv = _scored_starts(opts, acquisition, pinv, z_cand, yv, cv, av, opts.n_restarts, first, n_more)
        return _best_of_starts(opts, acquisition, yv, z_starts, cv, budget)

    return jax.vmap(voxel)(y, centres, alternative)


@jax.jit(static_argnums=0)
def _lm_continue(opts: _Options, acquisition, y, z, centres, budget):
    return jax.vmap(lambda yv, zv, cv: _lm(opts, acquisition, yv, zv, cv, budget))(y, z, centres)


@jax.jit(static_argnums=(0, 6))
def _rician(opts: _Options, acquisition, y, sigma, z, centres, budget):
    """BFGS on the Rician negative log-likelihood, from z; sigma (C,) is σ/S0."""

    def voxel(yv, sv, zv, cv):
        predict = _predictor(opts, acquisition, cv)
        y_pos = jnp.maximum(yv, 1e-12)  # magnitudes are > 0; a clipped 0 would have likelihood 0

        def nll(zz, _):
            return -jnp.sum(rician_log_likelihood(y_pos, predict(zz), sv))

        sol = optx.minimise(nll, optx.BFGS(rtol=opts.rtol, atol=opts.atol), zv, max_steps=budget, throw=False)
        z_end = _clip_chart(opts, sol.value)
        loss = nll(z_end, None)
        loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
        return {"z": z_end, "loss": loss,
                "converged": (sol.result == optx.RESULTS.successful) & jnp.isfinite(loss),
                "num_steps": sol.stats["num_steps"]}

    return jax.vmap(voxel)(y, sigma, z, centres)


@jax.jit(static_argnums=0)
def _to_params(opts: _Options, z, centres):
    dim = opts.prior.dim
    params = chart.from_unconstrained(opts.prior, z[:, :dim], centres)[0]
    params = {k: chart.canonical_axis(v) if v.ndim == 2 else v for k, v in params.items()}
    s0_factor = jnp.exp(z[:, dim]) if opts.fit_s0 else jnp.ones(z.shape[:1], z.dtype)
    return {"params": params, "s0_factor": s0_factor}
