"""Shared fixtures for the fitting tests: a 3-shell protocol and in-bounds truths."""

import jax.numpy as jnp
import numpy as np

from sbi_dmri.acquisition import Acquisition


def fibonacci_directions(n: int, seed: int = 0) -> np.ndarray:
    """n near-uniform unit directions on the hemisphere, randomly rotated per seed."""
    i = np.arange(n) + 0.5
    z = 1 - i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z**2)
    g = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return g @ q.T


def three_shell(n_b0: int = 6, n_dir: int = 30, shells=(1.0, 2.0, 3.0)) -> Acquisition:
    """b = 1, 2, 3 ms/µm², 30 directions each, 6 b0; δ/Δ = 10.6/43.1 ms (HCP-like)."""
    b = np.concatenate([np.zeros(n_b0)] + [np.full(n_dir, s) for s in shells])
    g = np.concatenate([np.tile([[0.0, 0.0, 1.0]], (n_b0, 1))]
                       + [fibonacci_directions(n_dir, k) for k in range(len(shells))])
    return Acquisition.pgse(b, g, delta=10.6, Delta=43.1)


def random_axes(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.where(v[:, 2:3] < 0, -v, v)


def angle_deg(a, b) -> np.ndarray:
    """Angle between axes (n ≡ −n), degrees."""
    c = np.abs(np.sum(np.asarray(a) * np.asarray(b), axis=-1))
    return np.degrees(np.arccos(np.clip(c, 0.0, 1.0)))


def ball_stick_truths(rng, n: int, *, f=(0.1, 0.9), d_par=(0.3, 2.8), d_iso=(0.3, 2.8), n_equator: int = 0):
    """Truths inside ball_stick's bounds ([0.1, 3] µm²/ms, f ∈ [0, 1]) with a margin: near the bounds
    the chart's logit saturates, and at f ≈ 0 the axis and d_par are not identifiable."""
    axes = random_axes(rng, n)
    if n_equator:
        # Axes on the equator of the prior's gnomonic chart (n_z = 0) exercise the per-voxel chart.
        phi = rng.uniform(0, np.pi, n_equator)
        axes[:n_equator] = np.stack([np.cos(phi), np.sin(phi), np.zeros(n_equator)], axis=1)
    return {
        "orientation": jnp.asarray(axes),
        "d_par": jnp.asarray(rng.uniform(*d_par, n)),
        "d_iso": jnp.asarray(rng.uniform(*d_iso, n)),
        "f_stick": jnp.asarray(rng.uniform(*f, n)),
    }
