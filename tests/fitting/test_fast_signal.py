"""The optimiser's NODDI signal (merged Watson convolution, smaller quadrature) against the model's own,
and the NLLS behaviours that the NODDI speed-up relies on: noise-free recovery with the cheaper signal,
and voxels whose optimum lies on a fraction bound stop instead of crawling along the logit."""

import jax
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.fitting import fit_nlls
from sbi_dmri.fitting.fast_signal import FIT_QUADRATURE_MAX_BD, fitting_signal

from .helpers import angle_deg, random_axes, three_shell


def both(model, acq, params):
    fast, form = fitting_signal(model, acq)
    own = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))(acq, params)
    cheap = jax.jit(jax.vmap(fast, in_axes=(None, 0)))(acq, params)
    return np.asarray(own), np.asarray(cheap), form


def test_noddi_fitting_signal_matches_the_model(x64):
    """Prior draws (κ up to 64) on the 3-shell protocol (b·d ≤ 5.1, or ≤ 9 with d_par free): the merged,
    smaller quadrature is within 1e-8 of `model.signal` (degree 40, 32/32 nodes)."""
    acq = three_shell()
    for opts in ({}, {"d_par": None}):
        m = models.get("noddi", **opts)
        p = m.prior.sample(jax.random.key(0), 300)
        own, cheap, form = both(m, acq, p)
        assert form == "merged-fit-quadrature"
        np.testing.assert_allclose(cheap, own, rtol=0, atol=1e-8)


def test_high_b_keeps_the_default_quadrature_and_other_models_their_signal(x64):
    """b = 10 ms/µm² (b·d = 17 > FIT_QUADRATURE_MAX_BD): merged convolution only, equal to rounding;
    a model without Watson compartments is fitted with its own signal function."""
    g = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.36, 0.48, 0.8]])
    acq = Acquisition.pgse(np.array([0.0, 10.0, 10.0, 5.0]), g, delta=10.0, Delta=30.0)
    assert 10.0 * 1.7 > FIT_QUADRATURE_MAX_BD
    m = models.get("noddi")
    own, cheap, form = both(m, acq, m.prior.sample(jax.random.key(1), 50))
    assert form == "merged"
    np.testing.assert_allclose(cheap, own, rtol=0, atol=1e-13)
    bs = models.get("ball_stick")
    fn, form = fitting_signal(bs, acq)
    assert form == "model" and fn == bs.signal


@pytest.mark.slow  # ~50 s on 2 cores, mostly the float64 compilations of the LM passes
def test_noddi_noise_free_recovery_and_fraction_bound(x64):
    """30 noise-free NODDI voxels (10 with f_iso = 0, on its bound): interior truths back to 1e-6
    relative and 1e-4°, computed by `model.signal` and fitted with the cheaper signal; the bound voxels
    converge (chart clipped at f_iso = 4.5e-5) with f_iso < 1e-4 and odi, ndi within 1e-4 relative."""
    m, acq = models.get("noddi"), three_shell()
    rng = np.random.default_rng(0)
    n = 30
    truth = {"odi": rng.uniform(0.05, 0.6, n), "ndi": rng.uniform(0.2, 0.8, n),
             "f_iso": np.where(np.arange(n) < 10, 0.0, rng.uniform(0.1, 0.4, n)), "orientation": random_axes(rng, n)}
    y = np.asarray(jax.vmap(m.signal, in_axes=(None, 0))(acq, truth))
    r = fit_nlls(m, acq, y, s0=None, n_starts=1, chunk_size=32, progress=False)
    assert r.converged.all()
    ang = angle_deg(r.params["orientation"], truth["orientation"])
    inner, bound = np.arange(n) >= 10, np.arange(n) < 10
    for k in ("odi", "ndi", "f_iso"):
        rel = np.abs(r.params[k][inner] / truth[k][inner] - 1)
        assert rel.max() < 1e-6, (k, rel.max())
    assert ang[inner].max() < 1e-4
    assert r.params["f_iso"][bound].max() < 1e-4
    for k in ("odi", "ndi"):
        assert np.abs(r.params[k][bound] / truth[k][bound] - 1).max() < 1e-4, k
    assert ang[bound].max() < 1e-3
