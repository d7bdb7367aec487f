"""Acquisition: units, derived quantities, waveforms, validation and FSL I/O."""

import warnings

import jax
import numpy as np
import pytest

from sbi_dmri.acquisition import Acquisition, read_bvals_bvecs, write_bvals_bvecs
from sbi_dmri.units import GAMMA, pgse_bvalue


def _dirs(n, seed=0):
    g = np.random.default_rng(seed).normal(size=(n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def test_pgse_check_value_from_physics_md():
    # G = 100 mT/m, δ = 10.6 ms, Δ = 43.1 ms gives b ≈ 3.18 ms/µm².
    b = pgse_bvalue(100.0, 10.6, 43.1)
    assert b == pytest.approx(3.1817, abs=1e-4)
    acq = Acquisition.pgse([b], [[0, 0, 1]], delta=10.6, Delta=43.1)
    assert float(acq.gradient_strength[0]) == pytest.approx(100.0, rel=1e-5)
    assert float(acq.q[0]) == pytest.approx(GAMMA * 100.0 * 10.6, rel=1e-5)


def test_btensor_of_pgse_is_linear():
    g = _dirs(5)
    b = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    acq = Acquisition.pgse(b, g, delta=10.0, Delta=30.0)
    B = np.asarray(acq.btensor)
    np.testing.assert_allclose(np.trace(B, axis1=1, axis2=2), b, rtol=1e-6)
    np.testing.assert_allclose(B[2], g[2][:, None] * g[2][None, :], rtol=1e-6)


def test_waveform_btensor_reproduces_pgse_b(x64):
    # Lobe edges on the grid: the rendered waveform's b-tensor is exactly b ĝĝᵀ.
    g = _dirs(4, 1)
    b = np.array([0.5, 1.0, 2.0, 3.0])
    acq = Acquisition.pgse(b, g, delta=10.0, Delta=30.0)
    wf = Acquisition.from_waveform(acq.render_waveform(0.1), 0.1)
    np.testing.assert_allclose(wf.bvalues, b, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(wf.directions * g, axis=1)), 1.0, rtol=1e-9)
    assert wf.TE[0] == pytest.approx(40.0)


def test_render_waveform_is_area_exact_off_grid():
    # δ = 10 ms on a 0.3 ms grid: edges fall inside steps, yet each lobe's area (hence q) is exact.
    acq = Acquisition.pgse([2.0], [[1, 0, 0]], delta=10.0, Delta=30.0)
    G = acq.render_waveform(0.3)[0, :, 0]
    assert G.sum() == pytest.approx(0.0, abs=1e-9)
    first = G[: int(30.0 / 0.3)].sum() * 0.3
    assert first == pytest.approx(float(acq.gradient_strength[0]) * 10.0, rel=1e-9)


def test_cosine_ogse_b_value(x64):
    # G(t) = G0 cos(2π f t) over N full periods: b = γ²G0² T / (2 (2πf)²) (T = N/f), q refocused.
    G0, f, n_periods, dt = 80.0, 0.1, 2, 0.01  # mT/m, 1/ms, -, ms
    t = (np.arange(int(n_periods / f / dt)) + 0.5) * dt
    G = np.zeros((1, t.size, 3))
    G[0, :, 2] = G0 * np.cos(2 * np.pi * f * t)
    acq = Acquisition.from_waveform(G, dt)
    T = n_periods / f
    expected = GAMMA**2 * G0**2 * T / (2 * (2 * np.pi * f) ** 2)
    assert acq.bvalues[0] == pytest.approx(expected, rel=1e-3)
    np.testing.assert_allclose(np.abs(acq.directions[0]), [0, 0, 1], atol=1e-9)


def test_shells_and_b0_mask():
    b = np.array([0.0, 0.01, 1.0, 1.02, 2.0, 0.98, 3.0, 0.0])
    acq = Acquisition.pgse(b, np.tile([[0, 0, 1.0]], (8, 1)), delta=10.0, Delta=30.0)
    shells, index = acq.shells(tol=0.1)
    np.testing.assert_allclose(shells, [0.0025, 1.0, 2.0, 3.0], atol=1e-3)
    assert index.tolist() == [0, 0, 1, 1, 2, 1, 3, 0]
    assert acq.b0_mask.tolist() == [True, True, False, False, False, False, False, True]


def test_select_and_pytree_through_jit():
    acq = Acquisition.pgse([0.0, 1.0, 2.0], _dirs(3), delta=10.0, Delta=30.0)
    sub = acq.select(~acq.b0_mask)
    assert sub.n_measurements == 2
    traces = []

    @jax.jit
    def total_b(a):
        traces.append(1)
        return a.bvalues.sum()

    assert float(total_b(sub)) == pytest.approx(3.0)
    total_b(Acquisition.pgse([0.5, 0.5], _dirs(2, 3), delta=10.0, Delta=30.0))
    assert len(traces) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bvalues=[0.0, 1.0], directions=[[0, 0, 1]] * 3), "count mismatch"),
        (dict(bvalues=[1.0], directions=[[0, 0, 0]]), "zero gradient direction"),
        (dict(bvalues=[1.0], directions=[[0, 0, 2.0]]), "non-unit gradient direction"),
        (dict(bvalues=[-1.0], directions=[[0, 0, 1]]), "negative b-values"),
        (dict(bvalues=[1000.0], directions=[[0, 0, 1]]), "looks like s/mm²"),
        (dict(bvalues=[np.nan], directions=[[0, 0, 1]]), "NaN or inf"),
        (dict(bvalues=[1.0], directions=[[0, np.inf, 1]]), "NaN or inf"),
        (dict(bvalues=[1.0], directions=[[0, 0, 1]], delta=40.0, Delta=30.0), "delta"),
    ],
)
def test_bad_pgse_input_is_refused(kwargs, message):
    kw = dict(delta=10.0, Delta=30.0) | kwargs
    with pytest.raises(ValueError, match=message):
        Acquisition.pgse(kw.pop("bvalues"), kw.pop("directions"), **kw)


def test_nearly_unit_direction_is_renormalised_with_warning():
    with pytest.warns(UserWarning, match="renormalised"):
        acq = Acquisition.pgse([1.0], [[0, 0, 1.005]], delta=10.0, Delta=30.0)
    assert np.linalg.norm(acq.directions[0]) == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 6-decimal text files must not warn
        Acquisition.pgse([1.0], [[0, 0.6, 0.8000001]], delta=10.0, Delta=30.0)


def test_unrefocused_waveform_is_refused():
    G = np.zeros((1, 100, 3))
    G[0, :60, 0] = 50.0
    G[0, 60:, 0] = -50.0
    with pytest.raises(ValueError, match="not refocused"):
        Acquisition.from_waveform(G, 0.1)


@pytest.mark.parametrize("layout", ["3xN", "Nx3"])
def test_fsl_round_trip(tmp_path, layout):
    b = np.array([0.0, 1.0, 2.0, 3.0])
    g = _dirs(4, 2)
    bval, bvec = tmp_path / "dwi.bval", tmp_path / "dwi.bvec"
    write_bvals_bvecs(bval, bvec, b, g)
    if layout == "Nx3":
        np.savetxt(bvec, np.loadtxt(bvec).T, fmt="%.8f")
    np.testing.assert_allclose(np.loadtxt(bval), b * 1000.0)  # s/mm² on disk
    acq = Acquisition.from_fsl(bval, bvec, delta=10.0, Delta=30.0)
    np.testing.assert_allclose(acq.bvalues, b)
    np.testing.assert_allclose(acq.directions[1:], g[1:], atol=1e-7)


def test_fsl_count_mismatch_and_missing_file(tmp_path):
    np.savetxt(tmp_path / "a.bval", [[0, 1000, 2000]])
    np.savetxt(tmp_path / "a.bvec", np.eye(3)[:, :2])
    with pytest.raises(ValueError, match="count mismatch"):
        read_bvals_bvecs(tmp_path / "a.bval", tmp_path / "a.bvec")
    with pytest.raises(ValueError, match="not found"):
        read_bvals_bvecs(tmp_path / "missing.bval", tmp_path / "a.bvec")
