"""MC libraries: shards + manifest on disk, streamed back through Grain in order and shuffled."""

import json

import grain
import jax
import numpy as np

from sbi_dmri.acquisition import Acquisition
from sbi_dmri.simulators.montecarlo import Cylinder, simulate
from sbi_dmri.simulators.montecarlo.library import MonteCarloLibrarySource, simulate_library


def test_library_roundtrip_through_grain(tmp_path):
    acq = Acquisition.pgse(np.array([0.0, 1.0]), np.array([[1.0, 0, 0], [1.0, 0, 0]]), delta=5.0, Delta=12.0)
    mpath = simulate_library("cylinder", acq, {"radius": (3.0, 6.0), "diffusivity": (1.0, 2.0)}, n_samples=5,
                             n_spins=1024, dt=0.1, seed=3, out_dir=tmp_path, shard_size=2, progress=False)
    manifest = json.loads(mpath.read_text())
    assert manifest["n_samples"] == 5 and len(manifest["shards"]) == 3 and manifest["package_version"]
    src = MonteCarloLibrarySource(tmp_path)
    assert len(src) == 5
    item = src[4]
    radius, d = item["params"]
    again = simulate(Cylinder(float(radius)), acq, diffusivity=float(d), n_spins=1024, dt=0.1, key=jax.random.fold_in(jax.random.key(3), 4))
    np.testing.assert_allclose(item["signal"], again.signal, rtol=0, atol=1e-6)  # the library holds real MC
    assert item["signal"][0] == 1.0 and 0.5 < item["signal"][1] < 1.0
    ds = grain.MapDataset.source(src).shuffle(seed=0)
    got = sorted(float(ds[i]["params"][0]) for i in range(len(ds)))
    assert np.allclose(got, sorted(float(src[i]["params"][0]) for i in range(5)))


def test_write_library_matches_the_simulated_layout_and_checks_its_input(tmp_path):
    from sbi_dmri.simulators.montecarlo.library import library_acquisition, read_manifest, write_library

    acq = Acquisition.pgse(np.array([0.0, 1.0, 2.0]), np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
                           delta=5.0, Delta=12.0)
    params = np.array([[2.0, 1.5], [3.0, 2.0], [4.0, 2.5]])
    signal = np.exp(-np.outer(params[:, 1], acq.bvalues))
    write_library(tmp_path, "toy", acq, params, signal, ranges={"radius": (2.0, 4.0), "diffusivity": (1.5, 2.5)},
                  shard_size=2, info={"made_by": "closed form"})
    manifest = read_manifest(tmp_path)
    assert manifest["n_samples"] == 3 and len(manifest["shards"]) == 2 and manifest["made_by"] == "closed form"
    import hashlib

    shard = manifest["shards"][1]  # its digest in the manifest: a changed library changes the manifest
    assert shard["sha256"] == hashlib.sha256((tmp_path / shard["file"]).read_bytes()).hexdigest() and shard["n"] == 1
    src = MonteCarloLibrarySource(tmp_path)
    np.testing.assert_allclose(src[2]["signal"], signal[2], rtol=1e-6)  # float32 on disk
    assert np.all(src[1]["stderr"] == 0) and tuple(src[1]["params"]) == (3.0, 2.0)
    got = src.take(np.array([[2, 0], [1, 2]]), ("signal", "params"))  # vectorised, across shards
    assert got["signal"].shape == (2, 2, 3) and set(got) == {"signal", "params"}
    np.testing.assert_array_equal(got["params"][1, 0], src[1]["params"])
    np.testing.assert_array_equal(got["signal"][0, 0], src[2]["signal"])
    back = library_acquisition(manifest)
    np.testing.assert_allclose(back.bvalues, acq.bvalues)
    np.testing.assert_allclose(back.Delta, 12.0)
    import pytest

    with pytest.raises(ValueError, match="radius values outside their range"):
        write_library(tmp_path / "bad", "toy", acq, params, signal, ranges={"radius": (2.0, 3.0), "diffusivity": (1.5, 2.5)})
    with pytest.raises(ValueError, match="expected params"):
        write_library(tmp_path / "bad", "toy", acq, params, signal[:, :2], ranges={"radius": (2.0, 4.0), "diffusivity": (1.5, 2.5)})
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        read_manifest(tmp_path / "nowhere")
