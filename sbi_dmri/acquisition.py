"""Acquisition: what was measured, one row per measurement, in the units of `sbi_dmri.units`.

An `Acquisition` is an immutable pytree (an `equinox.Module`), so it passes through `jax.jit` and
`jax.vmap` like any array container and gradients can reach the protocol. All validation happens in
the constructors, in NumPy, before any JAX tracing: bad input is a `ValueError` that names the problem.

Two kinds:
- PGSE (rectangular lobes): b (ms/µm²), unit direction ĝ, δ and Δ (ms) per measurement, optional TE.
  Derived: gradient strength G = √(b / (γ²δ²(Δ − δ/3))) (mT/m) and q = γGδ (rad/µm).
- Free waveform: the effective gradient G(t) (sign already flipped after each 180° pulse), shape
  (n_meas, n_t, 3) in mT/m, piecewise constant on intervals of `dt` ms. Derived: q(t) = γ∫G, the
  b-tensor B = ∫ q qᵀ dt (exact for piecewise-constant G), b = tr B, ĝ = principal axis of B.
  δ and Δ are NaN for free waveforms; kernels that need them must use the waveform instead.
"""

from __future__ import annotations

import math
import os
import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .units import GAMMA, MAX_PLAUSIBLE_B, bval_s_per_mm2_to_ms_per_um2

#: b-values (ms/µm²) at or below this count as b = 0 (50 s/mm², the usual scanner "b0" tolerance).
B0_THRESHOLD = 0.05

#: |‖ĝ‖ − 1| up to this is renormalised silently (text files carry ~6 decimals) ...
_SILENT_RENORM = 1e-4
#: ... and up to this with a warning; beyond it the direction is refused.
_WARN_RENORM = 1e-2


class Acquisition(eqx.Module):
    """Per-measurement acquisition parameters (units: b ms/µm², δ/Δ/TE ms, G mT/m, dt ms).

    Build it with `Acquisition.pgse`, `Acquisition.from_fsl` or `Acquisition.from_waveform`, which
    validate their input; the bare constructor does not.
    """

    bvalues: Float[np.ndarray, " n_meas"]
    directions: Float[np.ndarray, "n_meas 3"]
    delta: Float[np.ndarray, " n_meas"]
    Delta: Float[np.ndarray, " n_meas"]
    TE: Float[np.ndarray, " n_meas"] | None = None
    gradients: Float[np.ndarray, "n_meas n_t 3"] | None = None
    dt: float | None = eqx.field(static=True, default=None)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def pgse(cls, bvalues, directions, *, delta, Delta, TE=None) -> "Acquisition":
        """Pulsed-gradient spin echo with rectangular lobes.

        Args:
            bvalues: (n_meas,) b-values in ms/µm² (1 ms/µm² = 1000 s/mm²).
            directions: (n_meas, 3) gradient directions; unit length where b > 0 (any value at b = 0).
            delta: pulse duration δ in ms, scalar or (n_meas,).
            Delta: pulse separation Δ in ms (leading edge to leading edge), scalar or (n_meas,).
            TE: optional echo time in ms, scalar or (n_meas,); must be ≥ Δ + δ.
        """
        b = _finite_array(bvalues, "bvalues", ndim=1)
        n = b.shape[0]
        if n == 0:
            raise ValueError("bvalues is empty: an acquisition needs at least one measurement")
        if np.any(b < 0):
            raise ValueError(f"negative b-values: {b[b < 0][:5].tolist()} (b must be ≥ 0, in ms/µm²)")
        if b.max() > MAX_PLAUSIBLE_B:
            raise ValueError(
                f"max b-value {b.max():g} looks like s/mm², but ms/µm² is expected "
                f"(divide by 1000, or use Acquisition.from_fsl for .bval files)"
            )
        g = _finite_array(directions, "directions")
        if g.shape != (n, 3):
            raise ValueError(
                f"directions has shape {g.shape}, expected ({n}, 3) for {n} b-values "
                "(count mismatch between b-values and directions, or transposed)"
            )
        g = _unit_directions(g, b)
        delta = _per_measurement(delta, n, "delta")
        Delta = _per_measurement(Delta, n, "Delta")
        if np.any(delta <= 0):
            raise ValueError("delta (δ) must be > 0 ms")
        if np.any(delta > Delta):
            i = int(np.argmax(delta > Delta))
            raise ValueError(f"delta (δ = {delta[i]:g} ms) > Delta (Δ = {Delta[i]:g} ms) at measurement {i}")
        te = None
        if TE is not None:
            te = _per_measurement(TE, n, "TE")
            if np.any(te < Delta + delta - 1e-9):
                raise ValueError("TE must be at least Δ + δ (the second lobe ends before the echo)")
        return cls(bvalues=b, directions=g, delta=delta, Delta=Delta, TE=te)

    @classmethod
    def from_fsl(cls, bval_path, bvec_path, *, delta, Delta, TE=None) -> "Acquisition":
        """Read FSL/BIDS `.bval` (s/mm²) and `.bvec` (3×N or N×3) text files.

        Args:
            bval_path: path to the .bval file, b in s/mm² (converted to ms/µm² here).
            bvec_path: path to the .bvec file, 3 rows × N columns (FSL) or N rows × 3 columns.
            delta, Delta, TE: as in `Acquisition.pgse`, in ms.
        """
        b, g = read_bvals_bvecs(bval_path, bvec_path)
        return cls.pgse(b, g, delta=delta, Delta=Delta, TE=TE)

    @classmethod
    def from_waveform(cls, gradients, dt) -> "Acquisition":
        """Free gradient waveforms, piecewise constant on intervals of `dt`.

        Args:
            gradients: (n_meas, n_t, 3) effective gradient G(t) in mT/m (sign flipped after each
                refocusing pulse), G[:, k] applying on [k·dt, (k+1)·dt).
            dt: sampling interval in ms.
        """
        G = _finite_array(gradients, "gradients", ndim=3)
        if G.shape[-1] != 3:
            raise ValueError(f"gradients has shape {G.shape}, expected (n_meas, n_t, 3)")
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of ms, got {dt!r}")
        q = _cumulative_q(G, dt)  # (n, n_t + 1, 3), rad/µm
        qmax = np.max(np.linalg.norm(q, axis=-1), axis=1)
        qend = np.linalg.norm(q[:, -1], axis=-1)
        bad = qend > 1e-5 * qmax + 1e-12
        if np.any(bad):
            i = int(np.argmax(bad))
            raise ValueError(
                f"waveform {i} is not refocused: |q(TE)| = {qend[i]:.3g} rad/µm "
                f"(max |q| = {qmax[i]:.3g}); the effective gradient must integrate to zero"
            )
        B = _btensor_from_q(q, dt)
        b = np.trace(B, axis1=1, axis2=2)
        w, v = np.linalg.eigh(B)
        g = v[:, :, -1]  # principal axis (eigh sorts ascending)
        g[b <= 0] = (1.0, 0.0, 0.0)
        n, n_t = G.shape[:2]
        nan = np.full(n, np.nan)
        return cls(
            bvalues=b, directions=g, delta=nan, Delta=nan.copy(), TE=np.full(n, n_t * dt),
            gradients=G, dt=float(dt),
        )

    # ------------------------------------------------------------------ derived quantities
    @property
    def n_measurements(self) -> int:
        return int(np.shape(self.bvalues)[0])

    def __len__(self) -> int:
        return self.n_measurements

    @property
    def is_waveform(self) -> bool:
        """True for free-waveform acquisitions (δ, Δ undefined; use `gradients`)."""
        return self.gradients is not None

    @property
    def gradient_strength(self) -> Float[Array, " n_meas"]:
        """Gradient amplitude in mT/m: the PGSE lobe height, or max |G(t)| for a free waveform."""
        if self.is_waveform:
            return jnp.max(jnp.linalg.norm(jnp.asarray(self.gradients), axis=-1), axis=1)
        b = jnp.asarray(self.bvalues)
        delta, Delta = jnp.asarray(self.delta), jnp.asarray(self.Delta)
        return jnp.sqrt(b / (GAMMA**2 * delta**2 * (Delta - delta / 3.0)))

    @property
    def q(self) -> Float[Array, " n_meas"]:
        """Wave number in rad/µm: q = γGδ for PGSE, max |q(t)| for a free waveform."""
        if self.is_waveform:
            qt = _cumulative_q_jnp(jnp.asarray(self.gradients), self.dt)
            return jnp.max(jnp.linalg.norm(qt, axis=-1), axis=1)
        return GAMMA * self.gradient_strength * jnp.asarray(self.delta)

    @property
    def diffusion_time(self) -> Float[Array, " n_meas"]:
        """Effective diffusion time Δ − δ/3 in ms (PGSE)."""
        return jnp.asarray(self.Delta) - jnp.asarray(self.delta) / 3.0

    @property
    def btensor(self) -> Float[Array, "n_meas 3 3"]:
        """b-tensor B = ∫ q qᵀ dt in ms/µm²; b ĝĝᵀ for PGSE (linear encoding)."""
        if self.is_waveform:
            qt = _cumulative_q_jnp(jnp.asarray(self.gradients), self.dt)
            return _btensor_from_q(qt, self.dt, xp=jnp)
        g = jnp.asarray(self.directions)
        return jnp.asarray(self.bvalues)[:, None, None] * g[:, :, None] * g[:, None, :]

    @property
    def b0_mask(self) -> np.ndarray:
        """Boolean (n_meas,): measurements with b ≤ B0_THRESHOLD (0.05 ms/µm²)."""
        return np.asarray(self.bvalues) <= B0_THRESHOLD

    def shells(self, tol: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Group b-values into shells.

        Args:
            tol: b-values within `tol` ms/µm² of a shell's first member join it (default 0.1,
                i.e. 100 s/mm²). b ≤ B0_THRESHOLD always forms shell 0 when present.

        Returns:
            (shell_bvalues, index): the mean b of each shell (ascending), and for each measurement
            the index of its shell.
        """
        b = np.asarray(self.bvalues, dtype=np.float64)
        order = np.argsort(b, kind="stable")
        index = np.empty(b.shape[0], dtype=np.int64)
        starts: list[float] = []
        for i in order:
            is_b0 = b[i] <= B0_THRESHOLD
            if starts and ((is_b0 and starts[-1] <= B0_THRESHOLD) or (not is_b0 and b[i] - starts[-1] <= tol and starts[-1] > B0_THRESHOLD)):
                index[i] = len(starts) - 1
            else:
                starts.append(b[i])
                index[i] = len(starts) - 1
        means = np.array([b[index == k].mean() for k in range(len(starts))])
        return means, index

    def select(self, mask) -> "Acquisition":
        """The acquisition restricted to the measurements where `mask` (bool or indices) selects."""
        mask = np.asarray(mask)

        def take(x):
            return None if x is None else np.asarray(x)[mask]

        return Acquisition(
            bvalues=take(self.bvalues), directions=take(self.directions), delta=take(self.delta),
            Delta=take(self.Delta), TE=take(self.TE), gradients=take(self.gradients), dt=self.dt,
        )

    # ------------------------------------------------------------------ waveforms for Monte Carlo
    def duration(self) -> float:
        """Length of the encoding in ms: max TE, or max(Δ + δ) for PGSE without TE."""
        if self.is_waveform:
            return float(np.asarray(self.gradients).shape[1] * self.dt)
        if self.TE is not None:
            return float(np.max(self.TE))
        return float(np.max(np.asarray(self.Delta) + np.asarray(self.delta)))

    def render_waveform(self, dt: float) -> np.ndarray:
        """Effective gradients sampled on a grid of step `dt` ms, shape (n_meas, n_t, 3), mT/m.

        Each sample is the mean of G over its interval [k·dt, (k+1)·dt), so the area of every lobe
        (hence q(t) at the grid points, and refocusing) is exact even when a lobe edge falls inside a
        step. PGSE lobes start at t = 0 and t = Δ; n_t = ceil(duration / dt).
        """
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of ms, got {dt!r}")
        n_t = int(math.ceil(self.duration() / dt - 1e-9))
        t_new = np.arange(n_t + 1) * dt
        if self.is_waveform:
            G = np.asarray(self.gradients, dtype=np.float64)
            t_old = np.arange(G.shape[1] + 1) * self.dt
            Q = np.concatenate([np.zeros((G.shape[0], 1, 3)), np.cumsum(G * self.dt, axis=1)], axis=1)
            out = np.empty((G.shape[0], n_t, 3))
            for i in range(G.shape[0]):
                for c in range(3):
                    out[i, :, c] = np.diff(np.interp(t_new, t_old, Q[i, :, c])) / dt
            return out
        Gmag = np.asarray(self.gradient_strength, dtype=np.float64)
        delta, Delta = np.asarray(self.delta, np.float64), np.asarray(self.Delta, np.float64)
        # Cumulative integral of the (unit-amplitude) effective gradient: a piecewise-linear ramp.
        t = t_new[None, :]
        ramp = lambda a: np.clip(t - a[:, None], 0.0, delta[:, None])  # noqa: E731
        Q = ramp(np.zeros_like(delta)) - ramp(Delta)
        amp = np.diff(Q, axis=1) / dt  # (n, n_t) in [-1, 1]
        return (Gmag[:, None] * amp)[:, :, None] * np.asarray(self.directions, np.float64)[:, None, :]

    def __repr__(self) -> str:
        kind = f"waveform, n_t={np.shape(self.gradients)[1]}, dt={self.dt} ms" if self.is_waveform else "PGSE"
        b, _ = self.shells() if self.n_measurements else (np.array([]), None)
        return f"Acquisition({self.n_measurements} measurements, {kind}, shells b={np.round(b, 3).tolist()} ms/µm²)"


# ---------------------------------------------------------------------- helpers (NumPy, eager)
def read_bvals_bvecs(bval_path, bvec_path) -> tuple[np.ndarray, np.ndarray]:
    """Read FSL `.bval` (s/mm²) and `.bvec` files; return b in ms/µm² and directions (N, 3).

    The bvec file may be 3 rows × N columns (FSL) or N rows × 3 columns.
    """
    for p in (bval_path, bvec_path):
        if not os.path.isfile(p):
            raise ValueError(f"file not found: {p}")
    try:
        b = np.loadtxt(bval_path, dtype=np.float64, ndmin=1).ravel()
        g = np.loadtxt(bvec_path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"could not parse {bval_path} / {bvec_path} as numbers: {e}") from None
    n = b.shape[0]
    if g.shape == (3, n):
        g = g.T
    elif g.shape != (n, 3):
        raise ValueError(
            f"{bvec_path} has shape {g.shape}; with {n} b-values in {bval_path} it must be 3×{n} or {n}×3 "
            "(count mismatch between bvals and bvecs)"
        )
    return bval_s_per_mm2_to_ms_per_um2(b), g


def write_bvals_bvecs(bval_path, bvec_path, bvalues, directions) -> None:
    """Write FSL files: b in s/mm² (from ms/µm²) and directions as 3 rows × N columns."""
    np.savetxt(bval_path, np.asarray(bvalues)[None, :] * 1000.0, fmt="%.6g")
    np.savetxt(bvec_path, np.asarray(directions).T, fmt="%.8f")


def _finite_array(x, name, ndim=None) -> np.ndarray:
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(x).__name__}") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _per_measurement(x, n, name) -> np.ndarray:
    a = _finite_array(x, name)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},), got {a.shape}")
    return a


def _unit_directions(g: np.ndarray, b: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(g, axis=1)
    weighted = b > 0
    zero = weighted & (norm == 0)
    if np.any(zero):
        raise ValueError(f"zero gradient direction at b > 0 (measurements {np.flatnonzero(zero)[:5].tolist()})")
    off = np.abs(norm - 1.0)
    bad = weighted & (off > _WARN_RENORM)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"non-unit gradient direction at b > 0: measurement {i} has |g| = {norm[i]:.4g}")
    if np.any(weighted & (off > _SILENT_RENORM)):
        warnings.warn(
            f"gradient directions renormalised (largest | |g| − 1 | = {off[weighted].max():.2e})", stacklevel=3
        )
    out = g.copy()
    nz = norm > 0
    out[nz] = g[nz] / norm[nz, None]
    out[~nz] = (1.0, 0.0, 0.0)  # b = 0: the direction is irrelevant; keep it a unit vector
    return out


def _cumulative_q(G: np.ndarray, dt: float) -> np.ndarray:
    """q(t) = γ∫₀ᵗ G at the grid points t_k = k·dt, k = 0..n_t, rad/µm."""
    q = GAMMA * np.cumsum(G * dt, axis=1)
    return np.concatenate([np.zeros_like(q[:, :1]), q], axis=1)


def _cumulative_q_jnp(G, dt):
    q = GAMMA * jnp.cumsum(G * dt, axis=1)
    return jnp.concatenate([jnp.zeros_like(q[:, :1]), q], axis=1)


def _btensor_from_q(q, dt, xp=np):
    """B = ∫ q qᵀ dt, exact for q linear on each interval (piecewise-constant G)."""
    a, b = q[:, :-1], q[:, 1:]
    outer = lambda u, v: u[..., :, None] * v[..., None, :]  # noqa: E731
    per_step = (outer(a, a) + outer(b, b)) / 3.0 + (outer(a, b) + outer(b, a)) / 6.0
    return dt * xp.sum(per_step, axis=1)
