"""GPD machinery: mode truncation, the stable PGSE mode factor, the waveform recursion and limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps

from sbi_dmri.acquisition import Acquisition
from sbi_dmri.kernels import cylinder as cyl
from sbi_dmri.kernels import gpd, planes, sphere
from sbi_dmri.kernels.special import CYLINDER_ROOTS, SPHERE_ROOTS

N_REF = 3000  # modes of the reference sums

# jit once per shape (the waveform kernels hold a lax.scan, which eager mode would recompile per call)
cyl_wave = jax.jit(cyl.cylinder_gpd_waveform, static_argnums=1)
sph_wave = jax.jit(sphere.sphere_gpd_waveform, static_argnums=1)
pl_wave = jax.jit(planes.planes_gpd_waveform, static_argnums=1)


def sphere_roots(n):
    """Roots of j₁′: (x² − 2) sin x + 2x cos x = 0, by Newton from x ≈ mπ (m ≥ 2) and the table."""
    x = np.pi * np.arange(1, n + 1, dtype=np.float64)
    x[:6] = SPHERE_ROOTS[:6]
    for _ in range(30):
        f = (x**2 - 2) * np.sin(x) + 2 * x * np.cos(x)
        df = 2 * x * np.sin(x) + (x**2 - 2) * np.cos(x) + 2 * np.cos(x) - 2 * x * np.sin(x)
        x = x - f / df
    return x


def reference_log_signal(x, k, R, D, delta, Delta, b):
    """Direct Σ over N_REF modes of −γ²G² B_m N_m/λ_m², float64 NumPy, written independently."""
    a = x / R
    B = 2.0 / (a**2 * (x**2 - k))
    lam = D * a**2
    u, v = lam * delta, lam * Delta
    direct = 2 * u - 2 + 2 * np.exp(-u) + 2 * np.exp(-v) - np.exp(-(v - u)) - np.exp(-(v + u))
    with np.errstate(over="ignore", invalid="ignore"):
        small = 4 * (-np.expm1(-v)) * np.sinh(u / 2) ** 2 - 2 * (np.sinh(u) - u)
    N = np.where(u < 1, small, direct)
    return -b / (delta**2 * (Delta - delta / 3)) * np.sum(B * N / lam**2)


CORNERS = [  # (R µm, D µm²/ms, δ, Δ ms, b ms/µm²): the worst cases for truncation, and ordinary ones
    (20.0, 0.1, 1.0, 1.0, 10.0), (20.0, 0.1, 1.0, 100.0, 10.0), (20.0, 3.5, 40.0, 100.0, 10.0),
    (5.0, 2.0, 10.0, 30.0, 3.0), (0.1, 3.5, 1.0, 100.0, 10.0), (2.0, 0.5, 5.0, 5.0, 1.0),
]


def test_root_tables_match_the_reference_roots(x64):
    assert np.allclose(sphere_roots(50), SPHERE_ROOTS, atol=1e-10)
    assert np.allclose(sps.jnp_zeros(1, 50), CYLINDER_ROOTS, atol=1e-10)


@pytest.mark.parametrize("table, roots, k", [
    (gpd.CYLINDER, lambda: sps.jnp_zeros(1, N_REF), 1.0),
    (gpd.SPHERE, lambda: sphere_roots(N_REF), 2.0),
])
def test_mode_truncation_below_1e6(x64, table, roots, k):
    """30 modes + 16 tail pseudo-modes against a 3000-mode sum: |ΔE| < 1e-6 at every corner."""
    x = roots()
    for R, D, delta, Delta, b in CORNERS:
        ref = reference_log_signal(x, k, R, D, delta, Delta, b)
        d, Dl, bb = (np.array([v]) for v in (delta, Delta, b))
        got = gpd.pgse_log_signal(gpd.pgse_gamma_g_sq(bb, d, Dl), d, Dl, R, D, table)[0]
        assert abs(np.exp(ref) - np.exp(float(got))) < 1e-6, (R, D, delta, Delta, b)
        assert abs(float(got) - ref) <= 1e-6 * abs(ref) + 1e-12


def test_sum_rules_of_the_tables(x64):
    """Σ B_m = R²/4, R²/5, L²/12 (short-time), including the tail pseudo-modes."""
    for table, expected in ((gpd.CYLINDER, 1 / 4), (gpd.SPHERE, 1 / 5), (gpd.PLANES, 1 / 12)):
        assert abs(table.c.sum() - expected) < 1e-7 * expected


def test_pgse_mode_factor_is_the_closed_form_and_its_limits(x64):
    delta, Delta = 7.0, 23.0
    lam = jnp.logspace(-6, 8, 300)
    F = np.asarray(gpd.pgse_mode_factor(lam, delta, Delta))
    lam_np = np.asarray(lam)
    u, v = lam_np * delta, lam_np * Delta
    closed = (2 * u - 2 + 2 * np.exp(-u) + 2 * np.exp(-v) - np.exp(-(v - u)) - np.exp(-(v + u))) / lam_np**2
    ok = (u > 0.05) & (u < 1e4)  # where the direct closed form is itself accurate in float64
    assert np.allclose(F[ok], closed[ok], rtol=1e-9)
    # small λ: N/λ² → λδ²(Δ − δ/3); large λ: → 2δ/λ
    assert np.allclose(F[:5] / lam_np[:5], delta**2 * (Delta - delta / 3), rtol=1e-4)
    assert np.allclose(F[-5:] * lam_np[-5:], 2 * delta, rtol=1e-6)
    assert np.all(F > 0)


def test_mode_factor_float32_matches_float64():
    lam = np.logspace(-5, 9, 200)
    f32 = np.asarray(gpd.pgse_mode_factor(jnp.asarray(lam, jnp.float32), 1.0, 100.0))
    jax.config.update("jax_enable_x64", True)
    try:
        f64 = np.asarray(gpd.pgse_mode_factor(jnp.asarray(lam), 1.0, 100.0))
    finally:
        jax.config.update("jax_enable_x64", False)
    assert np.all(np.isfinite(f32)) and np.allclose(f32, f64, rtol=2e-5)


def _pgse(b, g, delta, Delta):
    return Acquisition.pgse(np.asarray(b, float), np.asarray(g, float), delta=delta, Delta=Delta)


def test_waveform_equals_pgse_closed_form_on_rectangular_lobes(x64):
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    acq = _pgse([0.0, 0.5, 2.0, 6.0], g, delta=8.0, Delta=21.0)
    wave = acq.render_waveform(0.1)  # lobe edges 0, 8, 21, 29 ms on the grid
    n = np.array([0.6, 0.0, 0.8])
    cyl_pgse, sph_pgse, pl_pgse = (jax.jit(k) for k in (cyl.cylinder_gpd, sphere.sphere_gpd, planes.planes_gpd))
    for R, D in ((0.5, 2.5), (3.0, 0.3), (12.0, 2.5)):
        e_pgse = cyl_pgse(acq.bvalues, acq.directions, acq.delta, acq.Delta, n, R, D)
        assert np.max(np.abs(e_pgse - cyl_wave(wave, 0.1, n, R, D))) < 1e-6
        e_pgse = sph_pgse(acq.bvalues, acq.delta, acq.Delta, R, D)
        assert np.max(np.abs(e_pgse - sph_wave(wave, 0.1, R, D))) < 1e-6
        e_pgse = pl_pgse(acq.bvalues, acq.directions, acq.delta, acq.Delta, n, 2 * R, D)
        assert np.max(np.abs(e_pgse - pl_wave(wave, 0.1, n, 2 * R, D))) < 1e-6


def _cosine_ogse(dt, sigma, Delta, periods, amplitude):
    """Cosine OGSE sampled area-exactly: +cos lobe on [0, σ], −cos lobe on [Δ, Δ + σ]."""
    n_t = int(round((Delta + sigma) / dt))
    t = np.arange(n_t + 1) * dt
    w = 2 * np.pi * periods / sigma

    def area(t0):  # ∫ cos(w (t − t0)) over [t0, t0 + σ] cut at the grid points
        s = np.clip(t - t0, 0.0, sigma)
        return np.sin(w * s) / w

    Q = area(0.0) - area(Delta)
    return amplitude * np.diff(Q) / dt


def _qform_trapezoid(g, dt, lam, refine):
    """I = 2λ∫Q² − λ²∫∫Q(t₁)Q(t₂)e^{−λ|t₁−t₂|} (integration by parts), trapezoid on a refined grid."""
    Q = np.concatenate([[0.0], np.cumsum(g) * dt])
    t = np.arange(Q.size) * dt
    tf = np.linspace(0.0, t[-1], (Q.size - 1) * refine + 1)
    Qf = np.interp(tf, t, Q)  # Q is exactly piecewise linear
    h = tf[1] - tf[0]
    w = np.full(tf.size, h)
    w[[0, -1]] = h / 2
    K = np.exp(-lam * np.abs(tf[:, None] - tf[None, :]))
    return 2 * lam * np.sum(w * Qf**2) - lam**2 * (w * Qf) @ K @ (w * Qf)


def test_waveform_recursion_on_cosine_ogse_against_numerical_double_integral(x64):
    dt = 0.5
    g = _cosine_ogse(dt, sigma=20.0, Delta=22.0, periods=2, amplitude=50.0)
    assert abs(g.sum()) < 1e-10  # refocused
    lams = np.array([1e-3, 0.03, 0.3, 1.0])
    got = np.asarray(gpd.waveform_double_integrals(g[None, :, None], dt, jnp.asarray(lams)))[0]
    for i, lam in enumerate(lams):
        # Richardson on the O(h²) trapezoid: refine 4 and 8
        i4, i8 = _qform_trapezoid(g, dt, lam, 4), _qform_trapezoid(g, dt, lam, 8)
        ref = (4 * i8 - i4) / 3
        assert abs(got[i] - ref) < 2e-5 * abs(ref), (lam, got[i], ref)


def test_waveform_free_limit(x64):
    """R → ∞: the cylinder waveform GPD tends to exp(−bD), the deficit shrinking like 1/R."""
    acq = _pgse([1.0], [[1.0, 0.0, 0.0]], delta=5.0, Delta=20.0)
    wave = acq.render_waveform(0.25)
    n = np.array([0.0, 0.0, 1.0])
    dev = []
    for R in (50.0, 100.0, 200.0):
        e = float(cyl_wave(wave, 0.25, n, R, 2.0)[0])
        dev.append(np.log(e) / (-2.0) - 1.0)
    assert -0.06 < dev[-1] < 0 and 1.8 < dev[0] / dev[1] < 2.3 and 1.8 < dev[1] / dev[2] < 2.3


@pytest.mark.parametrize("table", [gpd.CYLINDER, gpd.SPHERE, gpd.PLANES], ids=lambda t: t.name)
def test_pgse_free_limit_deficit_shrinks_like_one_over_size(x64, table):
    b, d, D = np.array([0.5]), np.array([5.0]), np.array([20.0])
    dev = [
        float(gpd.pgse_log_signal(gpd.pgse_gamma_g_sq(b, d, D), d, D, R, 2.0, table)[0]) / (-1.0) - 1.0
        for R in (100.0, 200.0, 400.0)
    ]
    assert -0.11 < dev[0] < 0 and all(1.9 < dev[i] / dev[i + 1] < 2.1 for i in range(2))


@pytest.mark.parametrize("table, coef", [(gpd.CYLINDER, 7 / 48), (gpd.SPHERE, 16 / 175), (gpd.PLANES, 1 / 60)],
                         ids=["cylinder", "sphere", "planes"])
def test_gpd_tends_to_neuman_with_error_like_size2_over_D_delta(x64, table, coef):
    """Dδ/R² ≫ 1: ln E → −coef γ²G²δR⁴/D with relative error ∝ R²/(Dδ) (halves when δ doubles)."""
    R, D, b = 2.0, 2.0, np.array([0.5])
    rel = []
    for delta in (20.0, 40.0, 80.0):
        d = np.array([delta])
        g2 = gpd.pgse_gamma_g_sq(b, d, d)
        got = float(gpd.pgse_log_signal(g2, d, d, R, D, table)[0])
        rel.append(got / float(-coef * g2[0] * delta * R**4 / D) - 1.0)
    assert abs(rel[0]) < 0.1
    assert 1.95 < rel[0] / rel[1] < 2.05 and 1.95 < rel[1] / rel[2] < 2.05


def test_waveform_gradients_are_finite_differences(x64):
    acq = _pgse([0.0, 2.0], [[1.0, 0, 0], [0.6, 0.8, 0]], delta=6.0, Delta=15.0)
    wave = acq.render_waveform(0.5)
    n = np.array([0.0, 0.0, 1.0])

    f = jax.jit(lambda R, D: jnp.sum(cyl.cylinder_gpd_waveform(wave, 0.5, n, R, D)))
    gR, gD = jax.jit(jax.grad(f, argnums=(0, 1)))(4.0, 1.5)
    eps = 1e-6
    assert np.isclose(gR, (f(4.0 + eps, 1.5) - f(4.0 - eps, 1.5)) / (2 * eps), rtol=1e-6)
    assert np.isclose(gD, (f(4.0, 1.5 + eps) - f(4.0, 1.5 - eps)) / (2 * eps), rtol=1e-6)


def test_waveform_float32_finite_in_range():
    acq = _pgse([0.0, 10.0, 10.0], [[1.0, 0, 0], [0, 1.0, 0], [0.6, 0, 0.8]], delta=1.0, Delta=1.0)
    wave = acq.render_waveform(0.05)
    n = jnp.array([0.0, 0.0, 1.0])
    for R in (0.1, 1.0, 20.0):
        for D in (0.1, 3.5):
            R, D = np.float32(R), np.float32(D)
            for e in (cyl_wave(wave, 0.05, n, R, D), sph_wave(wave, 0.05, R, D), pl_wave(wave, 0.05, n, 2 * R, D)):
                assert e.dtype == jnp.float32 and np.all(np.isfinite(e)) and np.all((e >= 0) & (e <= 1))
                assert abs(float(e[0]) - 1.0) < 1e-6
    g = jax.jit(jax.grad(lambda r: jnp.sum(cyl.cylinder_gpd_waveform(wave, 0.05, n, r, 1.0))))(0.1)
    assert np.isfinite(g)


