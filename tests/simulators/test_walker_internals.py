"""Walker building blocks that the physics tests rely on but cannot see: the flagged-spin compaction and
the direction sampler."""

import jax
import jax.numpy as jnp
import numpy as np

from sbi_dmri.simulators.montecarlo.walker import _direction, _flagged_indices, _pack_flags


def test_flagged_indices_match_flatnonzero_in_every_round():
    rng = np.random.default_rng(0)
    for p in (0.0, 0.05, 0.5, 1.0):
        mask = rng.random(4096) < p
        words, running = jax.jit(_pack_flags)(jnp.asarray(mask))
        want = np.flatnonzero(mask)
        for first in (0, 100, 4000):
            got = np.asarray(_flagged_indices(words, running, first, 300, 4096))
            expect = np.full(300, 4096)
            part = want[first:first + 300]
            expect[: len(part)] = part
            assert np.array_equal(got, expect), (p, first)


def test_directions_are_unit_and_isotropic():
    n = 200_000
    u = np.asarray(_direction(jnp.array([3, 4], jnp.uint32), jnp.arange(n, dtype=jnp.uint32),
                              jnp.full(n, 7, jnp.uint32)), np.float64)
    assert np.max(np.abs(np.linalg.norm(u, axis=0) - 1.0)) < 1e-6
    # Isotropy: mean 0 and second moments δ_ij/3 within a few standard errors (SE ≈ 0.3/√n).
    se = 0.3 / np.sqrt(n)
    assert np.all(np.abs(u.mean(axis=1)) < 5 * 0.58 / np.sqrt(n))
    np.testing.assert_allclose(u @ u.T / n, np.eye(3) / 3, atol=5 * se)
    # The azimuth is uniform on the circle (no gaps or seams at the quarter turns): 64 equal bins.
    phi = np.arctan2(u[1], u[0])
    counts = np.histogram(phi, bins=64, range=(-np.pi, np.pi))[0]
    expected = n / 64
    assert np.sum((counts - expected) ** 2 / expected) < 64 + 5 * np.sqrt(2 * 64)
