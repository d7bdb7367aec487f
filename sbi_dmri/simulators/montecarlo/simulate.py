"""Public Monte Carlo entry point: `simulate(substrate, acquisition, ...)` → `MonteCarloResult`.

Checks and factorises everything in NumPy before tracing, then runs fixed-shape chunks of spins
through one jitted walker (the last chunk padded and masked, so every chunk reuses one compilation),
sharded over a 1-D mesh of all local devices. Sums are reduced per block of `BLOCK` spins on the
device and added in float64 on the host in block order, so the signal depends on (key, n_spins) only,
bit for bit, whatever the chunk size.

Compartments: each walker is labelled by its compartment **at t = 0** (for packed substrates intra =
inside an obstacle, extra = outside); with permeable membranes walkers change compartments during the
walk but keep their t = 0 label, so `compartment_signals["intra"]` is the signal of the spins that
started inside.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ...acquisition import Acquisition
from ...units import GAMMA
from .substrates import rotation_to_z
from .walker import BLOCK, run_chunk

#: Warn when the step length exceeds this fraction of the smallest restricting length (radius, L/2).
MAX_STEP_OVER_RADIUS = 0.3
#: Warn when a gradient lobe holds fewer steps than this.
MIN_STEPS_PER_LOBE = 10

TRACE_COUNT = {"run_chunk": 0}  # incremented at trace time; tests use it to catch recompilation


@dataclasses.dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo signals, one per measurement (NumPy float64).

    signal: mean of cos φ over all spins; stderr: its standard error; imag: mean of sin φ (≈ 0 up to
    noise for a symmetric substrate). compartment_signals / compartment_stderr: the same per compartment
    (label at t = 0); compartment_fractions: fraction of spins starting in each. displacement, start
    (n_spins, 3) µm in the substrate's local frame, and label (n_spins,) only with `record=True`.
    """

    signal: np.ndarray
    stderr: np.ndarray
    imag: np.ndarray
    compartment_signals: dict
    compartment_stderr: dict
    compartment_fractions: dict
    n_spins: int
    n_steps: int
    dt: float
    step_length: float
    displacement: np.ndarray | None = None
    start: np.ndarray | None = None
    label: np.ndarray | None = None


def factorise_waveform(G: np.ndarray, rtol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Exact low-rank form G[m, k, c] = Σ_r C[m, c, r] P[k, r] of (n_meas, n_t, 3) waveforms.

    Returns (P (n_t, r), C (n_meas, 3, r)); singular values below rtol·max are dropped.
    """
    n_meas, n_t, _ = G.shape
    M = np.transpose(G, (0, 2, 1)).reshape(n_meas * 3, n_t)
    if not np.any(M):
        return np.zeros((n_t, 1)), np.zeros((n_meas, 3, 1))
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    r = max(1, int(np.sum(S > rtol * S[0])))
    return Vt[:r].T.copy(), (U[:, :r] * S[:r]).reshape(n_meas, 3, r)


def _shortest_lobe(G: np.ndarray, directions: np.ndarray) -> int:
    """Fewest steps in any constant-sign gradient lobe along each measurement's direction."""
    g = np.einsum("mkc,mc->mk", G, directions)
    thresh = 1e-6 * np.max(np.abs(g), axis=1, keepdims=True)
    sgn = np.where(np.abs(g) > thresh, np.sign(g), 0).astype(int)
    shortest = 10**9
    for row in sgn:
        if not row.any():
            continue
        change = np.flatnonzero(np.diff(row) != 0) + 1
        for seg in np.split(row, change):
            if seg[0] != 0:
                shortest = min(shortest, len(seg))
    return shortest


@partial(jax.jit, static_argnames=("n_labels", "max_reflections", "record"))
def _run_chunk_jit(geom, keypairs, spin, n_spins, basis, coeffs, step, p_transit, gamma_dt, *, n_labels,
                   max_reflections, record):
    TRACE_COUNT["run_chunk"] += 1
    return run_chunk(geom, keypairs, spin, n_spins, basis, coeffs, step, p_transit, gamma_dt,
                     n_labels=n_labels, max_reflections=max_reflections, record=record)


def _keypair(key) -> jax.Array:
    """The (2,) uint32 Threefry key behind a JAX PRNG key (typed or raw)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return jnp.asarray(key, jnp.uint32).reshape(-1)[-2:]


def simulate(substrate, acquisition: Acquisition, *, diffusivity: float, n_spins: int, dt: float, key,
             chunk_size: int | None = None, max_reflections: int = 16, record: bool = False) -> MonteCarloResult:
    """Monte Carlo diffusion signal of `substrate` for every measurement of `acquisition`.

    Args:
        substrate: `Free`, `Cylinder`, `Sphere`, `Planes`, `PackedCylinders` or `PackedSpheres`.
        acquisition: any `Acquisition` (PGSE or free waveform); rendered on the time grid `dt`
            (area-exact), directions in the lab frame.
        diffusivity: intrinsic diffusivity D (µm²/ms), the same in every compartment.
        n_spins: number of walkers.
        dt: time step (ms); step length √(6 D dt) µm.
        key: a JAX PRNG key (or an int seed).
        chunk_size: spins per jitted chunk (rounded up to a multiple of BLOCK·n_devices); memory is
            O(chunk_size · (n_meas + 3·rank)), never O(n_steps). Default: 65536, but 4096 for packed
            substrates (their per-spin candidate obstacles then stay in cache: 2-3x faster on CPU).
            The signal does not depend on it, bit for bit.
        max_reflections: wall interactions resolved per step (the rest of the step is dropped after
            that; 16 is far more than any step/R ≤ 0.5 needs).
        record: also return per-spin final displacements, start positions and labels.
    """
    if not (np.isfinite(diffusivity) and diffusivity > 0):
        raise ValueError(f"diffusivity must be positive (µm²/ms), got {diffusivity!r}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be positive (ms), got {dt!r}")
    n_spins = int(n_spins)
    if n_spins < 1:
        raise ValueError(f"n_spins must be ≥ 1, got {n_spins}")
    if isinstance(key, int):
        key = jax.random.key(key)

    step = math.sqrt(6.0 * diffusivity * dt)
    min_len = substrate.min_length()
    if step / min_len > MAX_STEP_OVER_RADIUS:
        warnings.warn(f"step length {step:.3g} µm is {step / min_len:.2f} of the smallest restricting length "
                      f"{min_len:.3g} µm (> {MAX_STEP_OVER_RADIUS}): expect a step-size bias; reduce dt",
                      stacklevel=2)
    G_lab = acquisition.render_waveform(dt)  # (n_meas, n_t, 3) mT/m
    shortest = _shortest_lobe(G_lab, np.asarray(acquisition.directions))
    if shortest < MIN_STEPS_PER_LOBE:
        warnings.warn(f"a gradient lobe spans only {shortest} steps of dt = {dt} ms (< {MIN_STEPS_PER_LOBE}); "
                      "reduce dt", stacklevel=2)
    R = rotation_to_z(substrate.orientation)
    G_local = np.einsum("ij,mkj->mki", R, G_lab)
    basis, coeffs = factorise_waveform(G_local)
    n_meas, n_t = G_lab.shape[:2]

    geom = substrate.geometry(step)
    p_transit = (2.0 / 3.0) * float(getattr(substrate, "kappa", 0.0)) * step / diffusivity
    if p_transit > 0.1:
        warnings.warn(f"membrane transit probability per hit is {p_transit:.3g} (> 0.1): reduce dt", stacklevel=2)
    names = tuple(substrate.compartments)

    if chunk_size is None:  # packed substrates test many candidate obstacles per spin: keep those in cache
        chunk_size = 4096 if geom.radii.shape[0] > 1 else 65536
    devices = jax.local_devices()
    mesh = Mesh(np.asarray(devices), ("spins",))
    spin_sharding = NamedSharding(mesh, PartitionSpec("spins"))
    unit = BLOCK * len(devices)
    chunk = max(1, -(-min(int(chunk_size), n_spins) // unit)) * unit
    n_chunks = -(-n_spins // chunk)
    keypairs = jnp.stack([_keypair(jax.random.fold_in(key, tag)) for tag in range(3)])

    basis_j = jnp.asarray(basis, jnp.float32)
    coeffs_j = jnp.asarray(coeffs, jnp.float32)
    sums = {k: [] for k in ("cos", "sin", "cos2", "count")}
    recorded = {k: [] for k in ("displacement", "start", "label")}
    for c in range(n_chunks):
        spin = jax.device_put(np.arange(c * chunk, (c + 1) * chunk, dtype=np.uint32), spin_sharding)
        out = _run_chunk_jit(geom, keypairs, spin, jnp.uint32(n_spins), basis_j, coeffs_j, jnp.float32(step),
                             jnp.float32(p_transit), jnp.float32(GAMMA * dt), n_labels=len(names),
                             max_reflections=max_reflections, record=record)
        for k in sums:
            sums[k].append(np.asarray(out[k], np.float64))
        if record:
            for k in recorded:
                recorded[k].append(np.asarray(out[k]))

    # Block sums added in block order in float64: independent of the chunking.
    tot = {k: np.add.reduce(np.concatenate(v, axis=0), axis=0) for k, v in sums.items()}
    count = tot["count"]  # (n_labels,)
    mean_cos = tot["cos"] / np.maximum(count, 1)[:, None]
    all_n = count.sum()
    signal = tot["cos"].sum(axis=0) / all_n
    imag = tot["sin"].sum(axis=0) / all_n
    var = np.maximum(tot["cos2"].sum(axis=0) / all_n - signal**2, 0.0)
    stderr = np.sqrt(var / all_n)
    comp_var = np.maximum(tot["cos2"] / np.maximum(count, 1)[:, None] - mean_cos**2, 0.0)
    comp_se = np.sqrt(comp_var / np.maximum(count, 1)[:, None])
    rec = {k: np.concatenate(v, axis=0)[:n_spins] for k, v in recorded.items()} if record else {}
    return MonteCarloResult(
        signal=signal, stderr=stderr, imag=imag,
        compartment_signals={nm: mean_cos[i] for i, nm in enumerate(names)},
        compartment_stderr={nm: comp_se[i] for i, nm in enumerate(names)},
        compartment_fractions={nm: float(count[i] / all_n) for i, nm in enumerate(names)},
        n_spins=n_spins, n_steps=n_t, dt=float(dt), step_length=step, **rec,
    )
