"""The analytic simulator: a model's closed-form signal for a batch of voxels, plus noise.

`simulate_signals` is the jitted, vmapped entry point used by the CLI and by tests; training
simulates inside its own jitted step with the same pieces (model.signal, noise.add_noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..acquisition import Acquisition
from ..models.base import Model
from ..noise import NOISE_KINDS, add_noise


@partial(jax.jit, static_argnames=("model",))
def _batched_signal(model: Model, acquisition: Acquisition, params):
    return jax.vmap(model.signal, in_axes=(None, 0))(acquisition, params)


def check_parameter_values(model: Model, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate user-given values for `model` (names, shapes, bounds); return (n_voxels, ...) arrays.

    Scalars may be given as one value or one per voxel; orientations as (3,) or (n_voxels, 3) and are
    normalised. Raises ValueError/KeyError naming the problem.
    """
    model.check_params(params)
    out, n = {}, None
    for p in model.parameters:
        v = np.asarray(params[p.name], dtype=np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{p.name} contains NaN or inf")
        if p.kind == "orientation":
            v = v.reshape(-1, 3) if v.size % 3 == 0 else None
            if v is None:
                raise ValueError(f"{p.name} must be a 3-vector (or n×3), e.g. {p.name}=0,0,1")
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            if np.any(norm == 0):
                raise ValueError(f"{p.name} must be a nonzero vector")
            v = v / norm
        else:
            v = v.reshape(-1)
            lo, hi = p.lower, p.upper
            if np.any(v < lo) or np.any(v > hi):
                raise ValueError(f"{p.name} = {v[(v < lo) | (v > hi)][:3].tolist()} is outside its bounds [{lo:g}, {hi:g}] {p.unit}")
        if n is not None and v.shape[0] not in (1, n):
            raise ValueError(f"{p.name} has {v.shape[0]} values, but other parameters have {n}")
        n = max(n or 1, v.shape[0])
        out[p.name] = v
    return {k: np.broadcast_to(v, (n,) + v.shape[1:]).copy() for k, v in out.items()}


def simulate_signals(
    model: Model,
    acquisition: Acquisition,
    params: Mapping[str, np.ndarray],
    *,
    snr: float | None = None,
    noise: str = "rician",
    seed: int = 0,
) -> np.ndarray:
    """Signals E = S/S0 of shape (n_voxels, n_meas) for parameter values in constrained units.

    Args:
        model: a registered model (`sbi_dmri.models.get(name)`).
        acquisition: the protocol.
        params: name → value(s) (see `check_parameter_values`).
        snr: S0/σ; None gives noise-free signals.
        noise: "rician" or "gaussian".
        seed: PRNG seed for the noise.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be a positive number, got {snr}")
    values = check_parameter_values(model, params)
    signal = _batched_signal(model, acquisition, {k: jnp.asarray(v) for k, v in values.items()})
    if snr is not None:
        signal = add_noise(jax.random.PRNGKey(seed), signal, snr, kind=noise)
    return np.asarray(signal)
