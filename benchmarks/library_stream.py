"""Monte Carlo library stream throughput: the Grain pipeline that feeds `data: {kind: library}` training.

Compares, side by side in one process, host-side samples/s of
  grain_shuffle : MapDataset.source(library)[:n].shuffle(seed).repeat().batch(B)   (per-item reads)
  shipped       : MapDataset.range(n).repeat().map_with_index(epoch_shuffle).batch(B).map(take)
                  (`LibrarySimulator.dataset`: NumPy permutation per epoch, one gather per shard)
for batch sizes 64 and 512 (median of --repeats runs of --batches batches each, after one warm-up batch).

    python benchmarks/library_stream.py [--library DIR] [--batches 200] [--repeats 3]

Without --library it writes a synthetic library (4096 samples × 68 measurements, shards of 256) to a
temporary folder: the stream's cost does not depend on how the signals were made.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import grain
import numpy as np


def _synthetic_library(directory: str, n: int = 4096) -> str:
    from sbi_dmri.protocols import load_protocol
    from sbi_dmri.simulators.montecarlo.library import write_library

    acq = load_protocol("clinical_2shell")
    rng = np.random.default_rng(0)
    params = np.stack([rng.uniform(3, 6, n), rng.uniform(1.5, 2.5, n)], axis=1)
    signal = np.exp(-np.outer(params[:, 1], acq.bvalues))
    write_library(directory, "synthetic", acq, params, signal, ranges={"radius": (3, 6), "diffusivity": (1.5, 2.5)})
    return directory


def _rate(dataset, batch: int, n_batches: int, repeats: int) -> float:
    from sbi_dmri.training.library_data import library_iterator

    it = library_iterator(dataset)
    next(it)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n_batches):
            next(it)
        times.append(time.perf_counter() - t)
    return n_batches * batch / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", help="library directory (default: a synthetic one in a temporary folder)")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from sbi_dmri.simulators.montecarlo.library import MonteCarloLibrarySource
    from sbi_dmri.training.config import load_config
    from sbi_dmri.training.data import build_simulator

    with tempfile.TemporaryDirectory() as tmp:
        path = args.library or _synthetic_library(os.path.join(tmp, "lib"))
        sim = build_simulator(load_config(None, ["data.kind=library", f"data.path={path}", "training.batch_size=64"]))
        print(f"library {path}: {sim.n_train} training samples; load {os.getloadavg()[0]:.1f}")
        print(f"{'batch':>6} {'grain_shuffle':>14} {'shipped':>10} {'ratio':>6}   (samples/s)")
        for batch in (64, 512):
            source = MonteCarloLibrarySource(path)
            old = (grain.MapDataset.source(source)[: sim.n_train].shuffle(seed=0).repeat()
                   .map(lambda item: {"signal": item["signal"], "params": item["params"]})
                   .batch(batch, drop_remainder=True))
            a = _rate(old, batch, args.batches, args.repeats)
            b = _rate(sim.dataset(batch, 0), batch, args.batches, args.repeats)
            print(f"{batch:>6} {a:>14,.0f} {b:>10,.0f} {b / a:>6.1f}")
        print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
