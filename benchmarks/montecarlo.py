"""Monte Carlo throughput: spin-steps per second for free diffusion, one cylinder and 100 packed cylinders,
side by side with a plain NumPy single-thread vectorised free walker (same step rule, same phase update).

Two rates per row, medians of --repeats runs: wall clock (the figure that counts) and process CPU time
(spin-steps per CPU-second, summed over threads: on a machine shared with other jobs it tells how much of
a wall-clock shortfall is the load). The load average is printed before and after.

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
    load_before = os.getloadavg()
    rows = []
    n_steps = None
    for name, sub in subs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_steps = simulate(sub, acq, diffusivity=D, n_spins=args.spins, dt=dt, key=0).n_steps  # compile
            times = []
            for r in range(args.repeats):
                times.append(_timed(simulate, sub, acq, diffusivity=D, n_spins=args.spins, dt=dt, key=r + 1))
        rows.append((name, *_rates(args.spins * n_steps, times)))
    times = [_timed(numpy_free_walker, args.spins, n_steps, np.sqrt(6 * D * dt), seed=r) for r in range(args.repeats)]
    numpy_rate, numpy_cpu = _rates(args.spins * n_steps, times)
    load_after = os.getloadavg()
    print(f"spins {args.spins}, steps {n_steps}, median of {args.repeats}; CPU cores: {os.cpu_count()}; "
          f"load average (1, 5, 15 min) before {_fmt(load_before)}, after {_fmt(load_after)}")
    print(f"{'substrate':48s} {'spin-steps/s':>14s} {'vs NumPy free':>14s} {'per CPU-second':>15s}")
    for name, rate, cpu in rows:
        print(f"{name:48s} {rate:14.3e} {rate / numpy_rate:14.2f} {cpu:15.3e}")
    print(f"{'NumPy single-thread vectorised free walker':48s} {numpy_rate:14.3e} {1.0:14.2f} {numpy_cpu:15.3e}")


def _timed(fn, *args, **kwargs):
    """(wall seconds, process CPU seconds) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    return time.perf_counter() - t, time.process_time() - c


def _rates(spin_steps, times):
    """Median spin-steps per wall second and per CPU second."""
    return (spin_steps / statistics.median(w for w, _ in times), spin_steps / statistics.median(c for _, c in times))


def _fmt(load):
    return "/".join(f"{x:.1f}" for x in load)


if __name__ == "__main__":
    main()
