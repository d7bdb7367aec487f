"""Monte Carlo signal libraries on disk, and a Grain data source that streams them.

`simulate_library` draws substrate parameters uniformly in the given ranges, simulates each substrate,
and writes `.npz` shards (signal, stderr, params) with a JSON manifest (substrate family, acquisition,
spins, steps, seed, package version). Every write is atomic (temporary file, then rename).
`write_library` writes signals already in memory in the same layout. `MonteCarloLibrarySource` is a
Grain random-access source over the shards (`grain.MapDataset.source(MonteCarloLibrarySource(path))`);
`sbi_dmri.training.library_data` trains amortized posteriors from it (`data: {kind: library}`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ... import __version__
from ...acquisition import Acquisition
from .simulate import simulate
from .substrates import Cylinder, Free, Planes, Sphere

#: Substrate families: their parameters (besides `diffusivity`, µm²/ms) and constructors.
FAMILIES = {
    "free": ((), lambda p: Free()),
    "cylinder": (("radius",), lambda p: Cylinder(p["radius"])),
    "sphere": (("radius",), lambda p: Sphere(p["radius"])),
    "planes": (("spacing",), lambda p: Planes(p["spacing"])),
}


def _atomic_save(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def simulate_library(substrate_family: str, acquisition: Acquisition, ranges: dict, *, n_samples: int,
                     n_spins: int, dt: float, seed: int, out_dir, shard_size: int = 256,
                     progress: bool = True) -> Path:
    """Simulate `n_samples` substrates with parameters uniform in `ranges`; write shards + manifest.

    Args:
        substrate_family: "free", "cylinder" (radius µm), "sphere" (radius µm) or "planes" (spacing µm).
        acquisition: the protocol (cylinders along z, planes normal along z; directions in that frame).
        ranges: {name: (low, high)} for the family's parameters and "diffusivity" (µm²/ms).
        n_samples, n_spins: substrates and walkers per substrate. dt: time step (ms). seed: int.
        out_dir: directory for `shard_#####.npz` and `manifest.json`.
        shard_size: samples per shard.
    Returns:
        The manifest path.
    """
    if substrate_family not in FAMILIES:
        raise ValueError(f"unknown substrate family {substrate_family!r}; choose from {sorted(FAMILIES)}")
    names, build = FAMILIES[substrate_family]
    names = names + ("diffusivity",)
    missing = [n for n in names if n not in ranges]
    if missing:
        raise ValueError(f"ranges lacks {missing} for family {substrate_family!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base_key = jax.random.key(seed)  # sample i walks with fold_in(key(seed), i)
    params = np.stack([rng.uniform(*ranges[n], size=n_samples) for n in names], axis=1)
    shards, n_steps = [], None
    for s0 in tqdm(range(0, n_samples, shard_size), desc="MC library shards", disable=not progress):
        rows = range(s0, min(s0 + shard_size, n_samples))
        sig, se = [], []
        for i in rows:
            p = dict(zip(names, params[i]))
            r = simulate(build(p), acquisition, diffusivity=float(p["diffusivity"]), n_spins=n_spins, dt=dt,
                         key=jax.random.fold_in(base_key, i))
            sig.append(r.signal)
            se.append(r.stderr)
            n_steps = r.n_steps
        shards.append(_write_shard(out, len(shards), np.asarray(sig), np.asarray(se), params[list(rows)]))
    return _write_manifest(out, substrate_family, names, ranges, acquisition, shards,
                           {"n_spins": n_spins, "dt": dt, "n_steps": n_steps, "seed": seed})


def write_library(out_dir, substrate_family: str, acquisition: Acquisition, params, signal, *, ranges: dict,
                  stderr=None, shard_size: int = 256, info: dict | None = None) -> Path:
    """Write signals already in memory as a library (the same layout `simulate_library` writes).

    For libraries made elsewhere (another simulator, a mesh substrate) and for tests.

    Args:
        substrate_family: a name for the substrate family (recorded; training needs no constructor for it).
        acquisition: the protocol of every sample (PGSE).
        params: (N, P) parameter values, columns in the order of `ranges` (units: µm, µm²/ms).
        signal: (N, M) E = S/S0, M = acquisition.n_measurements; stderr: (N, M) or None (zeros).
        ranges: {name: (low, high)}, the box the parameters were drawn uniformly from (the training prior).
        info: extra manifest entries (e.g. how the signals were made).
    Returns:
        The manifest path.
    """
    names = tuple(ranges)
    params, signal = np.asarray(params, np.float64), np.asarray(signal, np.float64)
    stderr = np.zeros_like(signal) if stderr is None else np.asarray(stderr, np.float64)
    n = params.shape[0]
    if params.shape != (n, len(names)) or signal.shape != (n, acquisition.n_measurements) or stderr.shape != signal.shape:
        raise ValueError(f"expected params ({n}, {len(names)}) and signal/stderr ({n}, {acquisition.n_measurements}); "
                         f"got {params.shape}, {signal.shape}, {stderr.shape}")
    for j, name in enumerate(names):
        lo, hi = ranges[name]
        if np.any(params[:, j] < lo) or np.any(params[:, j] > hi):
            raise ValueError(f"{name} values outside their range [{lo}, {hi}]")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards = [_write_shard(out, k, signal[s:s + shard_size], stderr[s:s + shard_size], params[s:s + shard_size])
              for k, s in enumerate(range(0, n, shard_size))]
    return _write_manifest(out, substrate_family, names, ranges, acquisition, shards, dict(info or {}))


def _write_shard(out: Path, index: int, signal, stderr, params) -> dict:
    path = out / f"shard_{index:05d}.npz"
    arrays = {"signal": np.asarray(signal, np.float32), "stderr": np.asarray(stderr, np.float32),
              "params": np.asarray(params, np.float32)}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _atomic_save(path, write)
    # the digest puts the content in the manifest: a run trained on the library can tell it changed
    return {"file": path.name, "n": len(arrays["params"]), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _write_manifest(out: Path, family: str, names, ranges, acquisition: Acquisition, shards, info: dict) -> Path:
    manifest = {
        "substrate_family": family, "parameter_names": list(names),
        "ranges": {n: list(map(float, ranges[n])) for n in names}, "n_samples": sum(s["n"] for s in shards),
        **info, "package_version": __version__, "shards": shards,
        "acquisition": {"bvalues": np.asarray(acquisition.bvalues).tolist(),
                        "directions": np.asarray(acquisition.directions).tolist(),
                        "delta": np.nan_to_num(np.asarray(acquisition.delta), nan=-1).tolist(),
                        "Delta": np.nan_to_num(np.asarray(acquisition.Delta), nan=-1).tolist(),
                        "is_waveform": acquisition.is_waveform},
    }
    mpath = out / "manifest.json"
    _atomic_save(mpath, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return mpath


def read_manifest(directory) -> dict:
    """The manifest of a library directory; FileNotFoundError / ValueError saying what is wrong."""
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a Monte Carlo library (no manifest.json)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    missing = [k for k in ("substrate_family", "parameter_names", "ranges", "shards", "acquisition") if k not in manifest]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return manifest


def library_acquisition(manifest: dict) -> Acquisition:
    """The PGSE acquisition a library was simulated with (δ, Δ in ms; b in ms/µm²)."""
    a = manifest["acquisition"]
    if a.get("is_waveform"):
        raise ValueError("the library was simulated with free gradient waveforms; only PGSE libraries are supported")
    return Acquisition.pgse(np.asarray(a["bvalues"]), np.asarray(a["directions"]), delta=np.asarray(a["delta"]),
                            Delta=np.asarray(a["Delta"]))


class MonteCarloLibrarySource:
    """Grain random-access data source over a library directory: item i → {"signal", "stderr", "params"}.

    Implements the `grain.python.RandomAccessDataSource` protocol (__len__, __getitem__); shards are
    loaded lazily and cached.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / "manifest.json").read_text())
        counts = np.array([s["n"] for s in self.manifest["shards"]])
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._cache: dict[int, dict] = {}

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        s = int(np.searchsorted(self._starts, index, side="right") - 1)
        j = index - self._starts[s]
        return {k: v[j] for k, v in self._shard(s).items()}

    def take(self, indices, keys=("signal", "stderr", "params")) -> dict:
        """Items `indices` (any int array) stacked: {key: (*indices.shape, ...)}; one gather per shard.

        The vectorised read for batched pipelines (per-item `__getitem__` costs Python time per sample).
        """
        idx = np.asarray(indices, np.int64)
        flat = idx.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"indices outside [0, {len(self)})")
        shard = np.searchsorted(self._starts, flat, side="right") - 1
        out = {}
        for s in np.unique(shard):
            arrays, sel = self._shard(int(s)), shard == s
            for k in keys:
                if k not in out:
                    out[k] = np.empty((flat.size,) + arrays[k].shape[1:], arrays[k].dtype)
                out[k][sel] = arrays[k][flat[sel] - self._starts[s]]
        return {k: v.reshape(idx.shape + v.shape[1:]) for k, v in out.items()}

    def _shard(self, s: int) -> dict:
        if s not in self._cache:
            with np.load(self.directory / self.manifest["shards"][s]["file"]) as z:
                self._cache[s] = {k: z[k] for k in ("signal", "stderr", "params")}
        return self._cache[s]

    def __repr__(self) -> str:
        return f"MonteCarloLibrarySource({self.directory}, {len(self)} samples)"
