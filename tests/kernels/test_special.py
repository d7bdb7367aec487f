"""Tests for sbi_dmri.kernels.special: Bessel functions, derivatives and root tables.

References are scipy.special.  scipy's jv is itself only good to ~2e-14 for orders
~60 at x ~ 10^3, so the float64 tolerance (1e-11) sits well above both errors and far
below the 1e-7 the kernels need.  Compilation dominates the run time, so tests share
input shapes (jit caches are keyed on order, shape and dtype) and always jit
transformed functions (eager grad-of-jit compiles forward and transpose separately).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sc
from scipy.optimize import brentq

from sbi_dmri.kernels import _bessel_roots, special
from sbi_dmri.kernels.special import (
    CYLINDER_ROOTS,
    CYLINDER_ROOTS_NK,
    J1_ZEROS,
    SPHERE_ROOTS,
    SPHERE_ROOTS_NK,
    SPHERICAL_J1_ZEROS,
    bessel_j0,
    bessel_j1,
    bessel_jn,
    bessel_jn_all,
    bessel_jn_prime,
    bessel_jn_prime_all,
    bessel_jn_prime_roots,
    j1_over_x,
    spherical_j1_over_x,
    spherical_jn,
    spherical_jn_all,
    spherical_jn_prime,
    spherical_jn_prime_all,
    spherical_jn_prime_roots,
)

NMAX = 40
TOL64 = 1e-11  # requirement 1e-7; measured <= 3e-14 against scipy
TOL32 = 2e-6  # measured <= 4e-7

# Dense grid on [0, 200] (step 0.1: hits 0, integers and the switch points 1 and 20)
# plus large arguments up to 2000.
GRID = np.concatenate([np.linspace(0.0, 200.0, 2001), np.linspace(210.0, 2000.0, 60)])


def _sph_prime(n, x):
    return sc.spherical_jn(n, x, derivative=True)


def _safe(x):
    return np.where(x == 0, 1.0, x)


REFERENCE = {
    "jn": sc.jv,
    "jnp": sc.jvp,
    "sph": sc.spherical_jn,
    "sphp": _sph_prime,
}
ALL_FUNCS = {
    "jn": bessel_jn_all,
    "jnp": bessel_jn_prime_all,
    "sph": spherical_jn_all,
    "sphp": spherical_jn_prime_all,
}


def _ref_all_fn(fn, nmax, x):
    return np.stack([fn(n, x) for n in range(nmax + 1)], axis=-1)


def _ref_all(kind, nmax, x):
    return _ref_all_fn(REFERENCE[kind], nmax, x)


# ---------------------------------------------------------------------------
# Values.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jn", "jnp", "sph", "sphp"])
def test_all_orders_float64(x64, kind):
    got = np.asarray(ALL_FUNCS[kind](NMAX, jnp.asarray(GRID)))
    ref = _ref_all(kind, NMAX, GRID)
    assert got.dtype == np.float64 and got.shape == (GRID.size, NMAX + 1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=TOL64)

    # Where n > x the values are tiny; the ratio recurrence keeps them *relatively*
    # accurate (a forward recurrence would return noise there).
    tiny = (np.abs(ref) > 1e-280) & (np.arange(NMAX + 1) > GRID[:, None])
    rel = np.abs(got[tiny] - ref[tiny]) / np.abs(ref[tiny])
    assert rel.max() < 1e-11

    # Parity: f_n(-x) = (-1)^n f_n(x), and (-1)^(n+1) for derivatives.  Same shape,
    # so this reuses the compiled function.
    neg = np.asarray(ALL_FUNCS[kind](NMAX, jnp.asarray(-GRID)))
    sign = (-1.0) ** (np.arange(NMAX + 1) + (kind in ("jnp", "sphp")))
    np.testing.assert_allclose(neg, sign * got, rtol=0, atol=1e-15)


def test_all_orders_float32():
    x = GRID.astype(np.float32)
    # One jitted call for the four tables: they share the seed evaluation.
    got = jax.jit(lambda x: {k: f(NMAX, x) for k, f in ALL_FUNCS.items()})(jnp.asarray(x))
    for kind, val in got.items():
        val = np.asarray(val)
        assert val.dtype == np.float32 and np.all(np.isfinite(val)), kind
        ref = _ref_all(kind, NMAX, x.astype(np.float64))
        np.testing.assert_allclose(val, ref, rtol=0, atol=TOL32, err_msg=kind)


@pytest.mark.parametrize(
    ("func", "ref", "n"),
    [
        (bessel_jn, sc.jv, 60),
        (bessel_jn, sc.jv, -1),  # J_{-n} = (-1)^n J_n
        (bessel_jn_prime, sc.jvp, -3),
        (spherical_jn, sc.spherical_jn, 60),
        (spherical_jn_prime, _sph_prime, 7),
    ],
)
def test_single_order_float64(x64, func, ref, n):
    x = GRID[::2]
    np.testing.assert_allclose(func(n, jnp.asarray(x)), ref(n, x), rtol=0, atol=TOL64)


def test_single_orders_agree_with_all_orders(x64):
    x = jnp.asarray(GRID)
    full = np.asarray(bessel_jn_all(NMAX, x))
    np.testing.assert_allclose(bessel_j0(x), full[:, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(bessel_j1(x), full[:, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(spherical_jn(0, x), spherical_jn_all(NMAX, x)[:, 0], rtol=0, atol=1e-15)


def test_j0_j1_and_form_factors_float64(x64):
    x = GRID
    xj = jnp.asarray(x)
    np.testing.assert_allclose(bessel_j0(xj), sc.j0(x), rtol=0, atol=1e-14)
    np.testing.assert_allclose(bessel_j1(xj), sc.j1(x), rtol=0, atol=1e-14)
    ref_c = np.where(x == 0, 0.5, sc.j1(x) / _safe(x))
    ref_s = np.where(x == 0, 1.0 / 3.0, sc.spherical_jn(1, x) / _safe(x))
    np.testing.assert_allclose(j1_over_x(xj), ref_c, rtol=0, atol=1e-15)
    np.testing.assert_allclose(spherical_j1_over_x(xj), ref_s, rtol=0, atol=1e-15)
    # Continuity across the switch points (series / asymptotic or closed form).
    for x0 in (1.0, 20.0):
        xx = np.array([x0 - 1e-12, x0, x0 + 1e-12] + [0.0] * (x.size - 3))
        np.testing.assert_allclose(j1_over_x(jnp.asarray(xx))[:3], sc.j1(xx[:3]) / xx[:3], atol=1e-15)
        np.testing.assert_allclose(
            spherical_j1_over_x(jnp.asarray(xx))[:3], sc.spherical_jn(1, xx[:3]) / xx[:3], atol=1e-15
        )
    np.testing.assert_allclose(j1_over_x(-xj), j1_over_x(xj), rtol=0, atol=0)


def test_j0_j1_and_form_factors_float32():
    x = GRID.astype(np.float32)
    xd = x.astype(np.float64)
    xj = jnp.asarray(x)
    outs = {
        "j0": (bessel_j0(xj), sc.j0(xd)),
        "j1": (bessel_j1(xj), sc.j1(xd)),
        "J1/x": (j1_over_x(xj), np.where(xd == 0, 0.5, sc.j1(xd) / _safe(xd))),
        "j1/x": (spherical_j1_over_x(xj), np.where(xd == 0, 1 / 3, sc.spherical_jn(1, xd) / _safe(xd))),
    }
    for name, (got, ref) in outs.items():
        assert got.dtype == jnp.float32, name
        np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=TOL32, err_msg=name)


def test_values_at_zero(x64):
    zero = jnp.zeros(GRID.shape)  # grid shape: reuses the compiled functions
    full = np.asarray(bessel_jn_all(NMAX, zero))[0]
    sph = np.asarray(spherical_jn_all(NMAX, zero))[0]
    np.testing.assert_array_equal(full[1:], 0.0)
    np.testing.assert_array_equal(sph, np.eye(NMAX + 1)[0])
    assert full[0] == pytest.approx(1.0, abs=2e-16)
    np.testing.assert_allclose(np.asarray(bessel_jn_prime_all(NMAX, zero))[0, :3], [0.0, 0.5, 0.0], atol=1e-16)
    np.testing.assert_allclose(np.asarray(spherical_jn_prime_all(NMAX, zero))[0, :3], [0.0, 1 / 3, 0.0], atol=1e-16)
    assert float(j1_over_x(zero)[0]) == pytest.approx(0.5, abs=1e-16)
    assert float(spherical_j1_over_x(zero)[0]) == pytest.approx(1 / 3, abs=1e-16)


def test_shapes_dtypes_and_argument_checks():
    x = jax.ShapeDtypeStruct((3, 4), jnp.float32)
    # eval_shape traces without compiling; the conftest makes rank promotion raise.
    assert jax.eval_shape(lambda x: bessel_jn_all(5, x), x).shape == (3, 4, 6)
    assert jax.eval_shape(lambda x: spherical_jn_prime_all(5, x), x).shape == (3, 4, 6)
    assert jax.eval_shape(lambda x: bessel_jn_prime(3, x), x).shape == (3, 4)
    assert jax.eval_shape(lambda x: spherical_jn(2, x), 1.5).shape == ()
    ints = jax.ShapeDtypeStruct((4,), jnp.int32)
    assert jax.eval_shape(lambda x: bessel_jn(2, x), ints).dtype == jnp.float32
    with pytest.raises(TypeError):
        bessel_jn(2.0, jnp.ones(3))
    with pytest.raises(ValueError):
        spherical_jn(-1, jnp.ones(3))
    with pytest.raises(ValueError):
        bessel_jn_all(-1, jnp.ones(3))
    with pytest.raises(TypeError):
        jax.jit(lambda n, x: bessel_jn(n, x))(2, jnp.ones(3))


# ---------------------------------------------------------------------------
# Derivatives.
# ---------------------------------------------------------------------------

# d/dx of every order at once: analytic references (second derivatives for the prime
# tables), and their exact values at x = 0 for orders 0..3.
def _sph_second(n, x):
    # j_n'' = (n j_{n-1}' - (n+1) j_{n+1}') / (2n+1), with j_0'' = -j_1'.
    if n == 0:
        return -_sph_prime(1, x)
    return (n * _sph_prime(n - 1, x) - (n + 1) * _sph_prime(n + 1, x)) / (2 * n + 1)


DERIVATIVE_REFERENCE = {
    "jn": (lambda n, x: sc.jvp(n, x), [0.0, 0.5, 0.0, 0.0]),
    "jnp": (lambda n, x: sc.jvp(n, x, 2), [-0.5, 0.0, 0.25, 0.0]),
    "sph": (_sph_prime, [0.0, 1 / 3, 0.0, 0.0]),
    "sphp": (_sph_second, [-1 / 3, 0.0, 2 / 15, 0.0]),
}


@pytest.mark.parametrize("kind", ["jn", "jnp", "sph", "sphp"])
def test_gradients_all_orders(x64, kind):
    f = ALL_FUNCS[kind]
    x = jnp.asarray(GRID)
    g = np.asarray(jax.jit(jax.vmap(jax.jacfwd(lambda s: f(NMAX, s))))(x))
    d_ref, at_zero = DERIVATIVE_REFERENCE[kind]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[0, :4], at_zero, rtol=0, atol=1e-15)  # GRID[0] == 0
    np.testing.assert_allclose(g, _ref_all_fn(d_ref, NMAX, GRID), rtol=0, atol=1e-11)
    # Independent of scipy and of the JVP rules: central differences of f itself (same
    # shape as the value tests, so no new compilation).
    h = 1e-5
    fd = (np.asarray(f(NMAX, x + h)) - np.asarray(f(NMAX, x - h))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8)
    if kind in ("jn", "sph"):
        # Reverse mode (what training uses) agrees with forward mode.
        rev = jax.jit(jax.vmap(jax.grad(lambda s: f(NMAX, s)[NMAX // 2])))(jnp.asarray(GRID[::97]))
        np.testing.assert_allclose(rev, g[::97, NMAX // 2], rtol=0, atol=1e-15)


SEED_CASES = {
    # name: (function, first derivative, second derivative (x > 0), f'(0), f''(0))
    "J0": (bessel_j0, lambda x: -sc.j1(x), lambda x: -sc.jvp(1, x), 0.0, -0.5),
    # d/dx [x^-1 f_1] = -x^-1 f_2 and (x^-1 f_1)'' = -f_2/x^2 + f_3/x, f = J or j.
    "J1/x": (
        j1_over_x,
        lambda x: -sc.jv(2, x) / x,
        lambda x: -sc.jv(2, x) / x**2 + sc.jv(3, x) / x,
        0.0,
        -1 / 8,
    ),
    "j1/x": (
        spherical_j1_over_x,
        lambda x: -sc.spherical_jn(2, x) / x,
        lambda x: -sc.spherical_jn(2, x) / x**2 + sc.spherical_jn(3, x) / x,
        0.0,
        -1 / 15,
    ),
}


@pytest.mark.parametrize("name", list(SEED_CASES))
def test_gradients_j0_j1_form_factors(x64, name):
    f, d1, d2, d1_zero, d2_zero = SEED_CASES[name]
    # 0, both sides of the switch points 1 and 20 (grad must not be halved there), spread.
    x = np.concatenate([[0.0, 1e-8, 0.999, 1.0, 1.001, 19.999, 20.0, 20.001], np.linspace(0.05, 150.0, 400)])
    both = jax.jit(lambda x: (jax.vmap(jax.grad(f))(x), jax.vmap(jax.grad(jax.grad(f)))(x)))
    g1, g2 = (np.asarray(g) for g in both(jnp.asarray(x)))
    assert g1[0] == pytest.approx(d1_zero, abs=1e-15)
    assert g2[0] == pytest.approx(d2_zero, abs=1e-13)
    np.testing.assert_allclose(g1[1:], d1(x[1:]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(g2[2:], d2(x[2:]), rtol=0, atol=1e-11)
    h = 1e-5
    fd = (np.asarray(f(jnp.asarray(x + h))) - np.asarray(f(jnp.asarray(x - h)))) / (2 * h)
    np.testing.assert_allclose(g1, fd, rtol=0, atol=1e-9)


def test_gradients_float32_finite():
    x = jnp.asarray([0.0, 1e-30, 1e-6, 0.5, 1.0, 19.99, 20.0, 150.0, 1500.0], jnp.float32)

    @jax.jit
    def grads(x):
        cyl = jax.vmap(jax.jacfwd(lambda s: bessel_jn_all(8, s)))(x)
        sph = jax.vmap(jax.jacfwd(lambda s: spherical_jn_all(8, s)))(x)
        seeds = [jax.vmap(jax.grad(j1_over_x))(x), jax.vmap(jax.grad(jax.grad(spherical_j1_over_x)))(x)]
        return cyl, sph, jnp.stack(seeds)

    cyl, sph, seeds = grads(x)
    assert cyl.dtype == jnp.float32
    for arr in (cyl, sph, seeds):
        assert bool(jnp.all(jnp.isfinite(arr)))
    np.testing.assert_allclose(cyl[0, :3], [0.0, 0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(sph[0, :3], [0.0, 1 / 3, 0.0], atol=1e-7)
    np.testing.assert_allclose(seeds[:, 0], [0.0, -1 / 15], atol=1e-6)
    xd = np.asarray(x, np.float64)
    np.testing.assert_allclose(cyl, _ref_all_fn(sc.jvp, 8, xd), rtol=0, atol=TOL32)
    np.testing.assert_allclose(sph, _ref_all_fn(_sph_prime, 8, xd), rtol=0, atol=TOL32)


# ---------------------------------------------------------------------------
# jit / vmap.
# ---------------------------------------------------------------------------


def test_jit_vmap_trace_once():
    traces = []

    @jax.jit
    def combo(x):
        traces.append(1)
        return bessel_jn(3, x) + j1_over_x(x)

    rng = np.random.default_rng(0)
    outs = [combo(jnp.asarray(rng.uniform(0.0, 50.0, 64), jnp.float32)) for _ in range(3)]
    assert len(traces) == 1
    x = jnp.asarray(rng.uniform(0.0, 50.0, 64), jnp.float32)
    direct = combo(x)

    batched = jax.jit(jax.vmap(combo))
    vm = batched(x[:, None])
    batched(x[:, None] + 1.0)
    assert len(traces) == 2  # one trace for the per-example shape (1,), then cached
    assert len(outs) == 3 and outs[0].shape == (64,)
    np.testing.assert_allclose(vm[:, 0], direct, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------
# Root tables.
# ---------------------------------------------------------------------------


def _scan_roots(f, count, start):
    """Independent root finder: sign changes on a 0.01 grid, refined by brentq."""
    grid = np.arange(start, start + 4.0 * count + 20.0, 0.01)
    vals = f(grid)
    idx = np.nonzero(np.sign(vals[:-1]) * np.sign(vals[1:]) < 0)[0][:count]
    assert idx.size == count
    return np.array([brentq(f, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-15) for i in idx])


def test_tables_are_literals_not_scipy():
    for mod in (special, _bessel_roots):
        src = inspect.getsource(mod)
        assert "import scipy" not in src and "from scipy" not in src


def test_one_dimensional_root_tables():
    for table in (CYLINDER_ROOTS, SPHERE_ROOTS, J1_ZEROS, SPHERICAL_J1_ZEROS):
        assert table.dtype == np.float64 and table.ndim == 1 and table.size >= 30
        assert np.all(np.diff(table) > 0) and table[0] > 0
    np.testing.assert_allclose(CYLINDER_ROOTS[:3], [1.841184, 5.331443, 8.536316], atol=1e-6)
    np.testing.assert_allclose(SPHERE_ROOTS[:3], [2.081576, 5.940370, 9.205840], atol=1e-6)
    np.testing.assert_allclose(J1_ZEROS[:2], [3.831706, 7.015587], atol=1e-6)
    np.testing.assert_allclose(SPHERICAL_J1_ZEROS[:2], [4.493409, 7.725252], atol=1e-6)

    assert np.abs(sc.jvp(1, CYLINDER_ROOTS)).max() < 1e-13
    assert np.abs(_sph_prime(1, SPHERE_ROOTS)).max() < 1e-13
    assert np.abs(sc.j1(J1_ZEROS)).max() < 1e-13
    assert np.abs(sc.spherical_jn(1, SPHERICAL_J1_ZEROS)).max() < 1e-13

    np.testing.assert_allclose(CYLINDER_ROOTS, sc.jnp_zeros(1, CYLINDER_ROOTS.size), rtol=0, atol=1e-10)
    np.testing.assert_allclose(J1_ZEROS, sc.jn_zeros(1, J1_ZEROS.size), rtol=0, atol=1e-10)
    sph = _scan_roots(lambda x: _sph_prime(1, x), SPHERE_ROOTS.size, 0.5)
    np.testing.assert_allclose(SPHERE_ROOTS, sph, rtol=0, atol=1e-10)
    zs = _scan_roots(lambda x: sc.spherical_jn(1, x), SPHERICAL_J1_ZEROS.size, 0.5)
    np.testing.assert_allclose(SPHERICAL_J1_ZEROS, zs, rtol=0, atol=1e-10)


def test_two_dimensional_root_tables():
    for table in (CYLINDER_ROOTS_NK, SPHERE_ROOTS_NK):
        assert table.shape == (21, 20) and table.dtype == np.float64
        assert np.all(np.diff(table, axis=1) > 0)
        assert table[0, 0] == 0.0 and np.all(table[1:, 0] > 0)
    # Row 0 is {0} followed by the zeros of J_1 (resp. j_1); row 1 is the 1-D table.
    np.testing.assert_array_equal(CYLINDER_ROOTS_NK[0, 1:], J1_ZEROS[:19])
    np.testing.assert_array_equal(SPHERE_ROOTS_NK[0, 1:], SPHERICAL_J1_ZEROS[:19])
    np.testing.assert_array_equal(CYLINDER_ROOTS_NK[1], CYLINDER_ROOTS[:20])
    np.testing.assert_array_equal(SPHERE_ROOTS_NK[1], SPHERE_ROOTS[:20])
    for n in range(21):
        assert np.abs(sc.jvp(n, CYLINDER_ROOTS_NK[n])).max() < 1e-13
        assert np.abs(_sph_prime(n, SPHERE_ROOTS_NK[n])).max() < 1e-13
        if n >= 1:
            np.testing.assert_allclose(CYLINDER_ROOTS_NK[n], sc.jnp_zeros(n, 20), rtol=0, atol=1e-10)
            # Scanning from n/2 (below the first root) also shows that no root was skipped.
            sph = _scan_roots(lambda x, n=n: _sph_prime(n, x), 20, 0.5 * n + 0.005)
            np.testing.assert_allclose(SPHERE_ROOTS_NK[n], sph, rtol=0, atol=1e-10)


def test_root_accessors_and_read_only_tables():
    np.testing.assert_array_equal(bessel_jn_prime_roots(3, 5), CYLINDER_ROOTS_NK[:4, :5])
    np.testing.assert_array_equal(spherical_jn_prime_roots(20, 20), SPHERE_ROOTS_NK)
    with pytest.raises(ValueError):
        bessel_jn_prime_roots(21, 5)
    with pytest.raises(ValueError):
        spherical_jn_prime_roots(2, 21)
    with pytest.raises(ValueError):
        CYLINDER_ROOTS[0] = 1.0
    with pytest.raises(ValueError):
        bessel_jn_prime_roots(2, 2)[0, 0] = 1.0
