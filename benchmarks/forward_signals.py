"""Forward-signal throughput of tissue models, and the accuracy/speed of the Watson dispersion methods.

    python benchmarks/forward_signals.py                # 1e5 voxels × 96 measurements, 3 runs
    python benchmarks/forward_signals.py --voxels 20000 --repeats 5

Part 1: jitted `jax.vmap(model.signal)` over voxels (chunks of `--chunk` voxels, each chunk one call
of the same compiled function), for ball_stick (scale), noddi and sandi, on a 3-shell PGSE protocol
(6 b = 0 + 30 directions at b = 1, 2, 3 ms/µm²; δ = 10.6 ms, Δ = 43.1 ms); parameters drawn from
each model's default prior. Median of `--repeats` timed runs after one warm-up run.

Part 2: Watson-dispersed stick, two methods at two sizes each: max |error| against a 400 000-point
Fibonacci-sphere reference (float64) over κ ∈ {0, …, 128} and b·d ∈ {3, 9, 30}, and throughput
(float32, `--method-voxels` voxels).
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.kernels import watson


def three_shell_protocol(seed: int = 0) -> Acquisition:
    rng = np.random.default_rng(seed)
    b = np.concatenate([np.zeros(6), np.repeat([1.0, 2.0, 3.0], 30)])
    g = rng.normal(size=(b.size, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return Acquisition.pgse(b, g, delta=10.6, Delta=43.1)


def time_runs(fn, repeats: int) -> list[float]:
    fn()  # warm-up (compilation)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def forward_throughput(name: str, acq: Acquisition, voxels: int, chunk: int, repeats: int) -> dict:
    model = models.get(name)
    params = model.prior.sample(jax.random.PRNGKey(0), voxels)
    batch = jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))
    chunks = [{k: v[i : i + chunk] for k, v in params.items()} for i in range(0, voxels, chunk)]

    def run():
        for c in chunks:
            out = batch(acq, c)
        out.block_until_ready()

    times = time_runs(run, repeats)
    return {"model": name, "voxels": voxels, "median_s": float(np.median(times)), "times": times}


# --------------------------------------------------------------------------- Watson methods
def fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z**2)
    phi = np.pi * (1.0 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def watson_methods():
    def product(n_polar, n_azimuth):
        def f(b, g, mu, kappa, d):
            bd = (b * d)[:, None]
            return watson.watson_disperse(lambda c: jnp.exp(-bd * c**2), g, mu, kappa, n_polar=n_polar,
                                          n_azimuth=n_azimuth)
        return f

    def legendre(degree, nodes):
        def f(b, g, mu, kappa, d):
            bd = (b * d)[:, None]
            return watson.watson_convolve(lambda t: jnp.exp(-bd * t**2), g, mu, kappa, degree=degree,
                                          n_kernel_nodes=nodes, n_watson_nodes=nodes)
        return f

    return {
        "product rule 12×24": product(12, 24),
        "product rule 16×32": product(16, 32),
        "Legendre L=24 (24 nodes)": legendre(24, 24),
        "Legendre L=40 (32 nodes), default": legendre(40, 32),
    }


def watson_accuracy(n_ref: int = 400_000) -> dict[str, tuple[float, float, float]]:
    """Max |error| for b·d ≤ 9 and at b·d = 30 in float64, and over all cases in float32, against
    the dense sphere (computed in float64 NumPy)."""
    ref_nodes = fibonacci_sphere(n_ref)
    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    mu = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    cases = [(k, bd) for k in (0.0, 0.5, 2.0, 8.0, 16.0, 32.0, 64.0, 128.0) for bd in (3.0, 9.0, 30.0)]
    refs = {}
    c_mu = ref_nodes @ mu
    for kappa, bd in cases:
        w = np.exp(kappa * (c_mu**2 - 1.0))
        w /= w.sum()
        refs[(kappa, bd)] = np.exp(-bd * (g @ ref_nodes.T) ** 2) @ w

    def errors(dtype):
        out = {}
        for name, f in watson_methods().items():
            fj = jax.jit(f)
            err_lo = err_hi = 0.0
            for (kappa, bd), r in refs.items():
                e = fj(jnp.full(40, bd, dtype), jnp.asarray(g, dtype), jnp.asarray(mu, dtype), jnp.asarray(kappa, dtype),
                       jnp.asarray(1.0, dtype))
                err = float(np.abs(np.asarray(e, np.float64) - r).max())
                if bd <= 9:
                    err_lo = max(err_lo, err)
                else:
                    err_hi = max(err_hi, err)
            out[name] = (err_lo, err_hi)
        return out

    f32 = errors(jnp.float32)
    jax.config.update("jax_enable_x64", True)
    try:
        f64 = errors(jnp.float64)
    finally:
        jax.config.update("jax_enable_x64", False)
    return {name: (*f64[name], max(f32[name])) for name in f64}


def watson_speed(acq: Acquisition, voxels: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    b = jnp.asarray(acq.bvalues, jnp.float32)
    g = jnp.asarray(acq.directions, jnp.float32)
    mu = rng.normal(size=(voxels, 3))
    mu = jnp.asarray(mu / np.linalg.norm(mu, axis=1, keepdims=True), jnp.float32)
    kappa = jnp.asarray(rng.uniform(0, 64, voxels), jnp.float32)
    d = jnp.asarray(rng.uniform(1, 3, voxels), jnp.float32)
    out = {}
    for name, f in watson_methods().items():
        fj = jax.jit(jax.vmap(lambda m, k, dd, f=f: f(b, g, m, k, dd)))
        times = time_runs(lambda fj=fj: fj(mu, kappa, d).block_until_ready(), repeats)
        out[name] = voxels / float(np.median(times))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=100_000)
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method-voxels", type=int, default=4_000)
    ap.add_argument("--skip-methods", action="store_true")
    ap.add_argument("--skip-forward", action="store_true")
    args = ap.parse_args(argv)
    acq = three_shell_protocol()
    print(f"# machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"devices {jax.devices()}; protocol {acq.n_measurements} measurements")
    if not args.skip_forward:
        print("\n| model | voxels | median s | voxels/s | runs (s) |\n|---|---|---|---|---|")
    for name in () if args.skip_forward else ("ball_stick", "noddi", "sandi"):
        r = forward_throughput(name, acq, args.voxels, args.chunk, args.repeats)
        runs = ", ".join(f"{t:.2f}" for t in r["times"])
        print(f"| {name} | {r['voxels']} | {r['median_s']:.2f} | {r['voxels'] / r['median_s']:.3g} | {runs} |",
              flush=True)
    if args.skip_methods:
        return
    acc = watson_accuracy()
    speed = watson_speed(acq, args.method_voxels, args.repeats)
    print("\n| Watson stick method | max err f64, b·d ≤ 9 | max err f64, b·d = 30 | max err f32, all |"
          " voxels/s (96 meas, float32) |")
    print("|---|---|---|---|---|")
    for name, (lo, hi, f32) in acc.items():
        print(f"| {name} | {lo:.1e} | {hi:.1e} | {f32:.1e} | {speed[name]:.3g} |")


if __name__ == "__main__":
    main()
