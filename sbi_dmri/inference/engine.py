"""Chunked amortized inference over many voxels: `infer_voxels(net, signals, acquisition) -> VoxelMaps`.

One jitted function per chunk of voxels does everything on device: S0 normalisation and the DTI
frame (the same `_build_batch` as `PretrainedPosterior`), the encoder with the protocol embedding
computed ONCE per acquisition (set encoders: (M, H) or (M, K, H), shared by every voxel and chunk), the
flow's draws, their constrained values and summaries, and — for the per-voxel trust check — the
importance log-weights under the analytic likelihood. Only per-voxel summaries (and the (C, n)
log-weights) come back to the host, so memory is bounded by one chunk: about
chunk × draws × measurements × 4 bytes for the simulated signals of the trust check.

Per-voxel trust (EVALUATION.md, "Per-voxel trust"): for draws θ_s ~ q(θ | y) in the network's
standardized θ space,

    log w_s = log p(y | θ_s) + log p_θ(θ_s) − log q(θ_s | y),

with p_θ the prior's image in θ space (`ParameterSpace.prior_log_prob_theta`, same measure as the
flow's density, so no Jacobian is missing) and p(y | θ) the noise model the network was trained with
(`meta["noise"]["kind"]`, Rician by default) on S/S0 signals. σ (of S/S0) per voxel: the sample
standard deviation of the b = 0 signals divided by their mean when there are at least 2 of them,
clipped to the training SNR range [1/SNR_max, 1/SNR_min]; with fewer b = 0 measurements, 1/SNR_mid
(geometric midpoint for a log-uniform SNR prior, arithmetic otherwise). The PSIS Pareto k̂ of the
weights (`diagnostics.pareto_khat`) then says whether q matches the true posterior in that voxel;
k̂ > 0.7 flags it (Vehtari et al., JMLR 25(72), 2024; the cut used in EVALUATION.md).

Importance correction (`correct=True`, the default; `inference.importance_correction`): the same weights,
for the network's draws and for as many draws of a Gaussian adapted to them, turn the summaries into
those of the exact posterior under the analytic likelihood (S0 marginalised); k̂ is then that of the
corrected weights.

Point estimates (`samples=0`): the network's point head, refined by a few damped Gauss–Newton steps on the
same likelihood (`inference.point_refinement`; `refine_steps=0` for the head alone).

Voxels with non-finite signals or a non-positive mean b = 0 signal are not passed through the network
(a placeholder keeps the chunk shape): their results are NaN and their `invalid` flag is set.
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from ..acquisition import B0_THRESHOLD, Acquisition
from ..networks.posterior import angles_deg, axial_mean
from .point_refinement import REFINE_STEPS

#: k̂ above this flags a voxel (EVALUATION.md).
KHAT_FLAG = 0.7
#: Central interval written as q025/q975.
INTERVAL = (0.025, 0.975)
#: Prior draws behind the prior widths of the width-ratio maps.
PRIOR_WIDTH_DRAWS = 20000
#: Times the per-chunk functions were traced (tests assert one per shape, not one per chunk).
TRACES = {"point": 0, "posterior": 0}


@dataclasses.dataclass
class VoxelMaps:
    """Per-voxel results, first axis = voxel (NaN where `invalid`).

    Attributes:
        mean: name → (V,) or (V, 3) (axes: axial mean, unit, n_z ≥ 0). With samples = 0 the point head.
        std, q025, q975, width_ratio: name → (V,); axes: RMS angle / angle quantiles in degrees, and
            the RMS angle over the prior's RMS angle. Empty with samples = 0.
        khat: (V,) PSIS Pareto k̂ (NaN when the trust check was not run).
        invalid: (V,) bool, signals not usable (non-finite or S0 ≤ 0).
        sigma: (V,) σ of S/S0 used in the likelihood (NaN when not run).
        seconds: wall time of the chunk loop (network + summaries + trust), excluding compilation
            of the first chunk only if `warmup` was requested.
        notes: how σ was chosen for the trust likelihood, or why the trust check was skipped.
        corrected: (V,) bool, summaries importance-corrected (`correct=True` and some weight non-zero).
        redrawn: (V,) bool, drawn again with more draws (`min_ess`).
    """

    mean: dict
    std: dict
    q025: dict
    q975: dict
    width_ratio: dict
    khat: np.ndarray
    invalid: np.ndarray
    sigma: np.ndarray
    seconds: float
    notes: list
    corrected: np.ndarray = None
    redrawn: np.ndarray = None


def usable_voxels(signals: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """(V,) bool: finite signals and a positive mean b = 0 signal (when the protocol has b = 0)."""
    s = np.asarray(signals)
    ok = np.all(np.isfinite(s), axis=1)
    b0 = np.asarray(acquisition.bvalues) <= B0_THRESHOLD
    if np.any(b0):
        with np.errstate(invalid="ignore"):
            ok &= np.where(ok, np.mean(np.where(np.isfinite(s[:, b0]), s[:, b0], 0.0), axis=1), 0.0) > 0
    return ok


def noise_sigma(signals: np.ndarray, acquisition: Acquisition, noise: dict) -> tuple[np.ndarray, str]:
    """(V,) σ of S/S0 for the trust likelihood and a sentence saying how it was chosen (module docstring)."""
    lo_snr, hi_snr = (float(v) for v in noise["snr"])
    b0 = np.asarray(acquisition.bvalues) <= B0_THRESHOLD
    s = np.asarray(signals, np.float64)
    if int(np.sum(b0)) >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            est = np.std(s[:, b0], axis=1, ddof=1) / np.mean(s[:, b0], axis=1)
        est = np.where(np.isfinite(est), est, 1.0 / hi_snr)
        return np.clip(est, 1.0 / hi_snr, 1.0 / lo_snr), (
            f"per voxel from the {int(np.sum(b0))} b=0 signals (sd/mean), clipped to the training SNR range "
            f"[{lo_snr:g}, {hi_snr:g}]")
    mid = math.sqrt(lo_snr * hi_snr) if noise.get("snr_scale", "log") == "log" else 0.5 * (lo_snr + hi_snr)
    return np.full(s.shape[0], 1.0 / mid), f"fewer than 2 b=0 signals: SNR {mid:.3g}, the training range's midpoint"


def prior_widths(space, key=None) -> dict[str, float]:
    """Prior sd per scalar parameter; for axes the prior's RMS angle (degrees) to any fixed axis."""
    key = jax.random.PRNGKey(1234) if key is None else key
    draws = space.prior.sample(key, PRIOR_WIDTH_DRAWS)
    out = {}
    for name in space.names:
        v = np.asarray(draws[name], np.float64)
        if name in space.axis_names:
            ang = np.degrees(np.arccos(np.clip(np.abs(v[:, 2]), 0.0, 1.0)))  # uniform axes: any reference works
            out[name] = float(np.sqrt(np.mean(ang**2)))
        else:
            out[name] = float(np.std(v, ddof=1))
    return out


def _float32_acquisition(acq: Acquisition) -> Acquisition:
    return Acquisition(bvalues=jnp.asarray(acq.bvalues, jnp.float32), directions=jnp.asarray(acq.directions, jnp.float32),
                       delta=jnp.asarray(acq.delta, jnp.float32), Delta=jnp.asarray(acq.Delta, jnp.float32), TE=None)


class _ChunkFunctions:
    """The jitted per-chunk functions for one network and one acquisition (compiled once per shape)."""

    def __init__(self, net, acquisition: Acquisition, n_draws: int, trust: bool, noise_kind: str, correct: bool,
                 refine_steps: int = 0):
        from ..networks.features import protocol_features
        from ..pretrained import _build_batch
        from .importance_correction import (corrected_weights, likelihood_signal, log_importance_weights,
                                            network_importance, weighted_summaries)
        from .point_refinement import refine_theta

        graphdef, self.state = nnx.split(net.network)
        space = net.space
        acq = _float32_acquisition(acquisition)
        signal_fn = likelihood_signal(space.model, acquisition)
        features = protocol_features(Acquisition(bvalues=acquisition.bvalues, directions=acquisition.directions,
                                                 delta=acquisition.delta, Delta=acquisition.Delta, TE=None))
        b0 = jnp.asarray(acquisition.bvalues <= B0_THRESHOLD)
        set_encoder = net.network.takes_protocol
        # the protocol half of the encoder, once per acquisition (docs/network_contract.md)
        self.embedding = (jax.jit(lambda st, p: nnx.merge(graphdef, st).protocol_embedding(p))(self.state, features)
                          if set_encoder else jnp.zeros(()))
        axis_names = space.axis_names
        q = jnp.asarray(INTERVAL, jnp.float32)

        def encode(state, raw, emb, snr):
            network = nnx.merge(graphdef, state)
            batch = _build_batch(raw, features, b0, acq.bvalues, acq.directions, snr if net.needs_snr else None)
            ctx = network.context_from_embedding(batch, emb) if set_encoder else network.context(batch)
            return network, batch, ctx

        def point(state, raw, emb, snr, sigma):
            TRACES["point"] += 1
            network, batch, ctx = encode(state, raw, emb, snr)
            theta = network.point(ctx)["mean"]
            if refine_steps:
                theta = refine_theta(theta, batch["frame"], batch["signals"], sigma, space, acq, signal_fn,
                                     steps=refine_steps)
            return space.from_theta(theta, batch["frame"])

        def posterior(state, raw, emb, snr, key, sigma):
            TRACES["posterior"] += 1
            network, batch, ctx = encode(state, raw, emb, snr)
            frame = batch["frame"][:, None]
            if correct:
                # one weighted pass: the importance weights, or the network's own draws where all are zero
                theta, lw = network_importance(network, ctx, batch, space, acq, sigma, noise_kind, key, n_draws,
                                               signal_fn)
                w = corrected_weights(lw)
                c = weighted_summaries(space.from_theta(theta, frame), w, axis_names, q)
                return {"mean": c["mean"], "std": c["std"], "q025": {k: v[0] for k, v in c["quantiles"].items()},
                        "q975": {k: v[1] for k, v in c["quantiles"].items()}, "log_weights": lw}
            theta = network.sample(ctx, key, n_draws)  # (C, n, D)
            params = space.from_theta(theta, frame)
            out = {"mean": {}, "std": {}, "q025": {}, "q975": {}}
            for name, v in params.items():
                if name in axis_names:
                    m = axial_mean(v)
                    ang = angles_deg(v, m)
                    out["mean"][name], out["std"][name] = m, jnp.sqrt(jnp.mean(ang**2, axis=1))
                    quant = jnp.quantile(ang, q, axis=1)
                else:
                    out["mean"][name], out["std"][name] = jnp.mean(v, axis=1), jnp.std(v, axis=1, ddof=1)
                    quant = jnp.quantile(v, q, axis=1)
                out["q025"][name], out["q975"][name] = quant[0], quant[1]
            if trust:
                out["log_weights"] = log_importance_weights(network, ctx, theta, batch, space, acq, sigma, noise_kind,
                                                            params, signal_fn)
            return out

        self.point = jax.jit(point)
        self.posterior = jax.jit(posterior)


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _chunk_functions(net, acquisition: Acquisition, n_draws: int, trust: bool, noise_kind: str,
                     correct: bool, refine_steps: int = 0) -> _ChunkFunctions:
    """Cached per network and acquisition, so repeated calls (and volumes) reuse the compiled code."""
    key = (np.asarray(acquisition.bvalues).tobytes(), np.asarray(acquisition.directions).tobytes(),
           np.asarray(acquisition.delta).tobytes(), np.asarray(acquisition.Delta).tobytes(), n_draws, trust, noise_kind,
           correct, refine_steps)
    per_net = _CACHE.setdefault(net, {})
    if key not in per_net:
        per_net[key] = _ChunkFunctions(net, acquisition, n_draws, trust, noise_kind, correct, refine_steps)
    return per_net[key]


def infer_voxels(net, signals, acquisition: Acquisition, *, samples: int = 100, chunk_size: int = 2048,
                 seed: int = 0, trust: bool = True, progress: bool = True, warmup: bool = False,
                 snr=None, correct: bool = True, refine_steps: int | None = None, min_ess: float = 0.0) -> VoxelMaps:
    """Amortized posterior summaries for every row of `signals` (V, M) measured with `acquisition`.

    The protocol is NOT checked here (`infer_volume` does, with its `force` switch).

    Args:
        net: a `PretrainedPosterior`.
        signals: (V, M) raw or S/S0 signals (normalised by each voxel's mean b = 0 signal here).
        acquisition: the M measurements.
        samples: posterior draws per voxel; 0 = point estimates only (fastest; no std/intervals/trust): the
            point head, refined by `refine_steps` Gauss–Newton steps on the analytic likelihood.
        chunk_size: voxels per compiled call (bounds memory; the last chunk is padded, no recompile).
        seed: PRNG seed of the draws (chunk i uses fold_in(key, i): results do not depend on timing).
        trust: compute the importance weights and Pareto k̂ (needs ≥ 25 draws and a noise model).
        progress: tqdm bar over chunks.
        warmup: run (and discard) the first chunk once before timing, so `seconds` excludes compilation.
        snr: S0/σ, a number or (V,), for SNR-conditioned networks (`net.needs_snr`); None estimates it
            (`pretrained.resolve_snr`). The trust check's likelihood then uses σ = 1/SNR (of S/S0).
        correct: importance-correct the summaries (`inference.importance_correction.adaptive_importance`:
            `samples`/2 draws of the network, `samples`/2 of a Gaussian adapted to their weights, all
            weighted by the analytic likelihood) in every voxel with a non-zero weight; elsewhere the
            summaries of the network's own draws. Needs `trust` (k̂ is then that of the corrected weights:
            above KHAT_FLAG the corrected summaries rest on few effective draws). `VoxelMaps.corrected`
            says which voxels were corrected.
        refine_steps: with samples = 0, damped Gauss–Newton steps from the point head towards the voxel's
            posterior mode in θ space (`inference.point_refinement`; least squares at σ = 1/SNR, S0 profiled);
            None: `point_refinement.REFINE_STEPS` where the network has a Rician/Gaussian noise model and a
            closed-form signal, else 0 (the head alone).
        min_ess: with `correct`, voxels whose corrected weights have fewer effective draws (Kish, 1/Σw²) than
            this, or none, are drawn again afresh with REDRAW_FACTOR × `samples` draws, which replace the first
            (`VoxelMaps.redrawn`; 0: never). The model cards use 300 with 1000 draws: at high SNR the
            posterior is far narrower than the network's and about 12 % of the draws count.
    """
    from ..pretrained import resolve_snr

    s = np.asarray(signals, np.float32)
    if s.ndim != 2 or s.shape[1] != acquisition.n_measurements:
        raise ValueError(f"signals have shape {s.shape}; expected (n_voxels, {acquisition.n_measurements})")
    if samples < 0:
        raise ValueError(f"samples must be ≥ 0, got {samples}")
    notes = []
    noise = dict(net.meta.get("noise") or {"kind": "none"})
    closed_form = net.space.model.has_closed_form
    if trust and samples > 0 and (samples < 25 or noise.get("kind") not in ("rician", "gaussian") or not closed_form):
        notes.append(f"trust check and importance correction skipped: need ≥ 25 draws, a Rician/Gaussian training noise model "
                     f"and a closed-form signal (got {samples} draws, noise {noise.get('kind')!r}, "
                     f"{'a' if closed_form else 'no'} closed form)")
        trust = False
    trust = trust and samples > 0
    known_noise = noise.get("kind") in ("rician", "gaussian") and closed_form
    if refine_steps is None:
        refine_steps = REFINE_STEPS if known_noise else 0
    refine_steps = int(refine_steps) if samples == 0 else 0
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be ≥ 0, got {refine_steps}")
    if refine_steps and not known_noise:
        notes.append("point refinement skipped: needs a Rician/Gaussian training noise model and a closed-form signal "
                     f"(got noise {noise.get('kind')!r}, {'a' if closed_form else 'no'} closed form)")
        refine_steps = 0
    V = s.shape[0]
    invalid = ~usable_voxels(s, acquisition)
    if np.all(invalid):
        raise ValueError("no voxel has finite signals with a positive b=0 signal")
    placeholder = s[np.argmax(~invalid)]
    s = np.where(invalid[:, None], placeholder[None, :], s)
    if net.needs_snr:
        snr_v, how_snr = resolve_snr(net, s, acquisition, snr, valid=~invalid)
        notes.append(how_snr)
    else:
        snr_v = np.full(V, np.nan)
    use = "trust likelihood" if trust else "point refinement"
    if (trust or refine_steps) and net.needs_snr:
        sigma = 1.0 / snr_v
        notes.append(f"{use}: {noise['kind']} noise, σ = 1/SNR (the SNR the network was given)")
    elif trust or refine_steps:
        sigma, how = noise_sigma(s, acquisition, noise)
        notes.append(f"{use}: {noise['kind']} noise, σ {how}")
    else:
        sigma = np.full(V, np.nan)

    correct = bool(correct and trust)
    if min_ess < 0:
        raise ValueError(f"min_ess must be ≥ 0, got {min_ess}")
    min_ess = float(min_ess) if correct else 0.0
    key = jax.random.PRNGKey(seed)
    widths = prior_widths(net.space) if samples > 0 else {}
    fns = _chunk_functions(net, acquisition, samples, trust, noise.get("kind", "none"), correct, refine_steps)
    C = int(min(chunk_size, -(-V // 64) * 64))
    if warmup:
        _run_chunks(fns, s[:C], sigma[:C], snr_v[:C], C, key, samples, placeholder, progress=False)
    t0 = time.perf_counter()
    out, khat, redraw = _run_chunks(fns, s, sigma, snr_v, C, key, samples, placeholder, progress, min_ess)
    redrawn = redraw & ~invalid
    if redrawn.any():
        from .importance_correction import REDRAW_FACTOR, REDRAW_KEY

        n2 = samples * REDRAW_FACTOR
        fns2 = _chunk_functions(net, acquisition, n2, trust, noise.get("kind", "none"), correct, refine_steps)
        C2 = int(min(max(C // REDRAW_FACTOR, 64), -(-int(redrawn.sum()) // 64) * 64))
        out2, khat2, _ = _run_chunks(fns2, s[redrawn], sigma[redrawn], snr_v[redrawn], C2,
                                     jax.random.fold_in(key, REDRAW_KEY), n2, placeholder, progress)
        for kind, d in out2.items():
            for name, v in d.items():
                out[kind][name][redrawn] = v
        khat[redrawn] = khat2
        notes.append(f"{int(redrawn.sum())} voxels with fewer than {min_ess:g} effective draws drawn again with "
                     f"{n2} draws")
    seconds = time.perf_counter() - t0

    def gather(kind):
        return {name: _nan_where(v, invalid) for name, v in out.get(kind, {}).items()}

    std = gather("std")
    width_ratio = {name: v / np.float32(widths[name]) for name, v in std.items()}
    # corrected: every voxel with a non-zero weight (k̂ < inf). Where 0.7 < k̂ < inf the corrected summaries
    # rest on few effective draws (the trust flag says so) but are still closer to the truth than the
    # network's own (benchmarks/results/importance.md)
    corrected = np.isfinite(khat) & ~invalid if correct else np.zeros(V, bool)
    if correct:
        notes.append(f"importance-corrected summaries in {int(corrected.sum())} of {int((~invalid).sum())} voxels "
                     f"(the rest: every importance weight zero, the network's own summaries)")
    return VoxelMaps(mean=gather("mean"), std=std, q025=gather("q025"), q975=gather("q975"), width_ratio=width_ratio,
                     khat=_nan_where(khat, invalid), invalid=invalid, sigma=_nan_where(np.asarray(sigma), invalid),
                     seconds=seconds, notes=notes, corrected=corrected, redrawn=redrawn)


def _run_chunks(fns, s, sigma, snr_v, C, key, samples, placeholder, progress, min_ess=0.0):
    """One pass of the chunk functions over the rows of s: (name → (V, ...) per kind, k̂ (V,), redraw (V,) bool)."""
    from ..diagnostics.importance import pareto_khat
    from .importance_correction import needs_redraw

    V = s.shape[0]
    n_chunks = -(-V // C)

    def run_chunk(i):
        raw = s[i * C:(i + 1) * C]
        sg = sigma[i * C:(i + 1) * C]
        sn = snr_v[i * C:(i + 1) * C]
        pad = C - raw.shape[0]
        if pad:
            raw = np.concatenate([raw, np.repeat(placeholder[None, :], pad, axis=0)])
            sg = np.concatenate([sg, np.full(pad, sg[0] if sg.size else 0.05)])
            sn = np.concatenate([sn, np.full(pad, sn[0] if sn.size else 20.0)])
        sn = jnp.asarray(np.nan_to_num(sn, nan=20.0), jnp.float32)
        sg = jnp.asarray(np.nan_to_num(sg, nan=0.05), jnp.float32)
        if samples == 0:
            return {"mean": fns.point(fns.state, raw, fns.embedding, sn, sg)}
        return fns.posterior(fns.state, raw, fns.embedding, sn, jax.random.fold_in(key, i), sg)

    parts: dict[str, dict[str, list]] = {}
    khat_parts, redraw_parts = [], []
    for i in tqdm(range(n_chunks), desc="infer", unit="chunk", disable=not progress, dynamic_ncols=True):
        out = jax.device_get(run_chunk(i))
        n_real = min(C, V - i * C)
        lw = out.pop("log_weights", None)
        if lw is not None:
            khat_parts.append(pareto_khat(np.asarray(lw[:n_real], np.float64)))
            redraw_parts.append(needs_redraw(lw[:n_real], min_ess))
        for kind, d in out.items():
            for name, v in d.items():
                parts.setdefault(kind, {}).setdefault(name, []).append(np.asarray(v[:n_real], np.float32))
    out = {kind: {name: np.concatenate(v) for name, v in d.items()} for kind, d in parts.items()}
    khat = np.concatenate(khat_parts) if khat_parts else np.full(V, np.nan)
    redraw = np.concatenate(redraw_parts) if redraw_parts else np.zeros(V, bool)
    return out, khat, redraw


def _nan_where(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=np.float32 if values.dtype != np.float64 else np.float64)
    out[invalid] = np.nan
    return out
