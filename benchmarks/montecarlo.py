"""Monte Carlo throughput: spin-steps per second for free diffusion, one cylinder and 100 packed cylinders,
side by side with a plain NumPy single-thread vectorised free walker (same step rule, same phase update).

Usage: python benchmarks/montecarlo.py [--spins 65536] [--steps 400] [--repeats 3] [--skip-packed]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np


def numpy_free_walker(n_spins, n_steps, step, seed=0):
    """Reference: fixed-length random-direction steps, one PGSE-like phase accumulator (float32)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((3, n_spins), np.float32)
    acc = np.zeros((3, n_spins), np.float32)
    profile = np.where(np.arange(n_steps) < n_steps // 2, 1.0, -1.0).astype(np.float32)
    for k in range(n_steps):
        z = rng.uniform(-1, 1, n_spins).astype(np.float32)
        ph = rng.uniform(0, 2 * np.pi, n_spins).astype(np.float32)
        s = np.sqrt(1 - z * z)
        dx = step * np.stack([s * np.cos(ph), s * np.sin(ph), z])
        acc += (x + 0.5 * dx) * profile[k]
        x += dx
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spins", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-packed", action="store_true")
    args = ap.parse_args()

    from sbi_dmri.acquisition import Acquisition
    from sbi_dmri.simulators.montecarlo import Cylinder, Free, PackedCylinders, simulate

    D, dt = 2.0, 0.02
    T = args.steps * dt
    acq = Acquisition.pgse(np.array([1.0]), np.array([[1.0, 0.0, 0.0]]), delta=T / 2 - 1e-6, Delta=T / 2)
    subs = {"free": Free(), "one cylinder (R = 5 µm)": Cylinder(5.0)}
    if not args.skip_packed:
        subs["100 packed cylinders (gamma radii, f = 0.5)"] = PackedCylinders.random(100, 2.0, 0.5, gamma_shape=5.0)
    rows = []
    n_steps = None
    for name, sub in subs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate(sub, acq, diffusivity=D, n_spins=args.spins, dt=dt, key=0)  # compile
            times = []
            for r in range(args.repeats):
                t = time.perf_counter()
                res = simulate(sub, acq, diffusivity=D, n_spins=args.spins, dt=dt, key=r + 1)
                times.append(time.perf_counter() - t)
        n_steps = res.n_steps
        rows.append((name, args.spins * n_steps / statistics.median(times)))
    times = []
    for r in range(args.repeats):
        t = time.perf_counter()
        numpy_free_walker(args.spins, n_steps, np.sqrt(6 * D * dt), seed=r)
        times.append(time.perf_counter() - t)
    numpy_rate = args.spins * n_steps / statistics.median(times)
    print(f"spins {args.spins}, steps {n_steps}, median of {args.repeats}; CPU cores: {os.cpu_count()}")
    print(f"{'substrate':48s} {'spin-steps/s':>14s} {'vs NumPy free':>14s}")
    for name, rate in rows:
        print(f"{name:48s} {rate:14.3e} {rate / numpy_rate:14.2f}")
    print(f"{'NumPy single-thread vectorised free walker':48s} {numpy_rate:14.3e} {1.0:14.2f}")


if __name__ == "__main__":
    main()
