"""Training from a Monte Carlo library on disk (`data: {kind: library}`): Grain order, noise on the fly,
exact resume, restore for inference on the library's protocol, and one-line config errors.

The library here is written with `write_library` from a closed-form toy signal (instant); the real
Monte Carlo writer is tested in tests/simulators/test_library.py. The training runs share one child
process (with the persistent compilation cache of tests/training/conftest.py).
"""

import json

import jax
import numpy as np
import pytest

from sbi_dmri.acquisition import Acquisition
from sbi_dmri.simulators.montecarlo.library import write_library
from sbi_dmri.training.config import ConfigError, from_dict, load_config
from sbi_dmri.training.data import build_simulator

from .conftest import run_child

N_SAMPLES, BATCH = 40, 12  # 4 held out (validation_fraction 0.1), 36 for training: 3 batches per epoch
RANGES = {"radius": (1.0, 5.0), "diffusivity": (1.5, 2.5)}


def _acquisition() -> Acquisition:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(13, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return Acquisition.pgse(np.r_[0.0, 0.0, np.full(5, 1.0), np.full(6, 2.5)], g, delta=10.0, Delta=20.0)


def _toy_library(directory, n=N_SAMPLES, seed=1):
    """Axially symmetric Gaussian signals along z: D_par = diffusivity, D_perp = diffusivity·(radius/5)²/2."""
    acq = _acquisition()
    rng = np.random.default_rng(seed)
    params = np.stack([rng.uniform(*RANGES[k], n) for k in RANGES], axis=1)
    d_par, d_perp = params[:, 1], params[:, 1] * (params[:, 0] / 5.0) ** 2 / 2
    cos2 = np.asarray(acq.directions)[:, 2] ** 2
    b = np.asarray(acq.bvalues)
    signal = np.exp(-b[None] * (d_par[:, None] * cos2[None] + d_perp[:, None] * (1 - cos2[None])))
    write_library(directory, "toy_cylinder", acq, params, signal, ranges=RANGES, shard_size=16)
    return params, signal


def _config(path, **sections):
    raw = {"data": {"kind": "library", "path": str(path)},
           "noise": {"kind": "gaussian", "snr": [20.0, 20.0]},
           "network": {"encoder": "mlp", "hidden": 8, "depth": 1, "flow": "affine", "flow_layers": 1,
                       "quantiles": [0.1, 0.5, 0.9]},
           "optimizer": {"name": "adam", "lr": 3e-3, "warmup_steps": 2},
           "training": {"steps": 12, "batch_size": BATCH, "stats_samples": 500, "log_every": 4},
           "evaluation": {"every": 12, "n_sims": 24, "diagnostics": False},
           "checkpoint": {"every": 4, "keep": 5}}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return from_dict(raw)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy_library")
    params, signal = _toy_library(directory)
    return directory, params, signal


def _epochs(sim, seed, n_batches):
    from sbi_dmri.training.library_data import library_iterator

    it = library_iterator(sim.dataset(BATCH, seed))
    return [next(it) for _ in range(n_batches)], it


def _rows(params_train, batch_params):
    """Library row index of each sample of a batch (parameters are unique floats)."""
    return [int(np.flatnonzero(np.all(params_train == p, axis=1))[0]) for p in batch_params]


def test_grain_order_is_shuffled_per_epoch_deterministic_and_resumable(library):
    directory, params, _ = library
    sim = build_simulator(_config(directory))
    assert sim.n_train == 36 and sim.description["n_validation"] == 4
    train = params[:36].astype(np.float32)
    batches, it = _epochs(sim, seed=0, n_batches=6)
    order = [r for b in batches for r in _rows(train, b["params"])]
    epoch1, epoch2 = order[:36], order[36:]
    assert sorted(epoch1) == list(range(36)) and sorted(epoch2) == list(range(36))  # each epoch: every sample once
    assert epoch1 != list(range(36)) and epoch2 != epoch1  # shuffled, and reshuffled for the second epoch
    again, _ = _epochs(sim, seed=0, n_batches=6)
    assert [r for b in again for r in _rows(train, b["params"])] == order  # deterministic given the seed
    other, _ = _epochs(sim, seed=1, n_batches=3)
    assert [r for b in other for r in _rows(train, b["params"])] != epoch1
    # the held-out tail never enters training
    assert not np.any(np.isin(np.concatenate([b["params"][:, 0] for b in batches]), params[36:, 0].astype(np.float32)))
    # iterator state: a fresh iterator set to the saved state continues exactly
    state = it.get_state()
    json.dumps(state)  # stored as a JSON item in the checkpoint
    expected = [next(it)["params"] for _ in range(2)]
    from sbi_dmri.training.library_data import library_iterator

    resumed = library_iterator(sim.dataset(BATCH, 0))
    resumed.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(next(resumed)["params"], e)


def test_noise_is_added_on_the_fly_each_epoch_differently(library):
    directory, params, signal = library
    sim = build_simulator(_config(directory))
    batches, _ = _epochs(sim, seed=0, n_batches=6)
    train = params[:36].astype(np.float32)
    j = _rows(train, batches[0]["params"])[0]  # a sample of step 0; find it again in the second epoch
    step2 = next(s for s in range(3, 6) if j in _rows(train, batches[s]["params"]))
    i2 = _rows(train, batches[step2]["params"]).index(j)
    data_key = jax.random.PRNGKey(7)
    observe = jax.jit(sim.observe)
    a = observe(jax.random.fold_in(data_key, 0), batches[0]["signal"], batches[0]["params"])
    b = observe(jax.random.fold_in(data_key, step2), batches[step2]["signal"], batches[step2]["params"])
    np.testing.assert_allclose(a.clean[0], signal[j], rtol=1e-6)  # the clean signal is the library's
    np.testing.assert_allclose(b.clean[i2], signal[j], rtol=1e-6)
    assert np.min(np.abs(np.asarray(a.noisy[0] - b.noisy[i2]))) > 0  # same sample, fresh noise
    np.testing.assert_allclose(a.params["radius"][0], params[j, 0], rtol=1e-6)
    # Gaussian noise at SNR = S0/σ = 20: σ = 0.05 on E; the signals are divided by the mean noisy b0
    draws = [observe(jax.random.PRNGKey(k), batches[0]["signal"], batches[0]["params"]) for k in range(300)]
    resid = np.stack([np.asarray(d.noisy - d.clean) for d in draws])
    assert abs(resid.std() / 0.05 - 1) < 0.03 and abs(resid.mean()) < 0.002
    b0 = np.asarray(sim.protocol.acquisition.bvalues) == 0
    np.testing.assert_allclose(np.stack([np.asarray(d.signals)[:, b0].mean(axis=1) for d in draws]), 1.0, atol=1e-5)


LIBRARY_RUNS = """
import json, sys
import numpy as np
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.pretrained import load_pretrained
from sbi_dmri.training import checkpoint as ck
from sbi_dmri.training.config import from_dict
from sbi_dmri.training.loop import train_and_evaluate
raw, ref_dir, run_dir = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
ref = train_and_evaluate(from_dict(raw), ref_dir)

class Stop(Exception):
    pass
save = ck.TrainingCheckpoints.save_latest
def save_then_stop(self, step, *a, **k):  # the process "dies" right after its step-4 checkpoint
    save(self, step, *a, **k)
    if step == 4:
        raise Stop
ck.TrainingCheckpoints.save_latest = save_then_stop
try:
    train_and_evaluate(from_dict(raw), run_dir)
except Stop:
    pass
ck.TrainingCheckpoints.save_latest = save
resumed = train_and_evaluate(from_dict(raw), run_dir)

net = load_pretrained(ref_dir)
acq = Acquisition.pgse(np.asarray(net.protocol.acquisition.bvalues), np.asarray(net.protocol.acquisition.directions),
                       delta=10.0, Delta=20.0)
signals = np.asarray(json.loads(sys.argv[4]), np.float32)
est = net.estimate(signals, acq)
post = net.posterior(signals, acq, n_samples=32)
errors = {}
try:
    net.estimate(signals[:, :-1], acq.select(np.arange(acq.n_measurements - 1)))
except ValueError as e:
    errors["protocol"] = str(e)
try:
    net.space.model.signal(acq, {})
except NotImplementedError as e:
    errors["signal"] = str(e)
print("RESULT " + json.dumps({"ref": ref["final_train"], "resumed": resumed["final_train"],
      "resumed_from": resumed["resumed_from"], "traces": resumed["train_step_traces"],
      "model": net.model_name, "names": list(net.parameter_names), "library": net.meta["library"],
      "radius": est["radius"].tolist(), "draws": list(np.asarray(post.draws["diffusivity"]).shape),
      "errors": errors}, default=str))
"""


@pytest.fixture(scope="module")
def runs(library, tmp_path_factory, child_env):
    directory, params, signal = library
    ref_dir, run_dir = tmp_path_factory.mktemp("lib_ref"), tmp_path_factory.mktemp("lib_resumed")
    from sbi_dmri.training.config import to_dict

    raw = to_dict(_config(directory))
    out = run_child(LIBRARY_RUNS, [json.dumps(raw), ref_dir, run_dir, json.dumps((signal[36:] * 900).tolist())],
                    child_env)
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return ref_dir, run_dir, json.loads(line[len("RESULT "):])


def test_resumed_run_matches_the_uninterrupted_one(runs):
    import os

    import orbax.checkpoint as ocp

    ref_dir, run_dir, out = runs
    assert out["resumed_from"] == 4 and out["traces"] == 3  # one trace per run (3 runs in the child)
    assert out["resumed"] == pytest.approx(out["ref"], rel=1e-6)  # final-step loss terms
    for step in (8, 12):
        a = ocp.StandardCheckpointer().restore(os.path.join(str(ref_dir), "checkpoints", "latest", str(step), "model"))
        b = ocp.StandardCheckpointer().restore(os.path.join(str(run_dir), "checkpoints", "latest", str(step), "model"))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
        state = json.load(open(os.path.join(str(run_dir), "checkpoints", "latest", str(step), "data", "metadata")))
        assert state == {"next_index": step}  # the Grain iterator state sits beside the weights


def test_restores_for_inference_on_the_library_protocol_only(runs):
    _, _, out = runs
    assert out["model"] == "mc_library:toy_cylinder" and out["names"] == ["radius", "diffusivity"]
    assert out["library"]["n_train"] == 36 and out["library"]["ranges"]["radius"] == [1.0, 5.0]
    assert all(1.0 <= r <= 5.0 for r in out["radius"]) and out["draws"] == [4, 32]
    assert "fixed protocol of 13" in out["errors"]["protocol"]
    assert "no closed-form signal" in out["errors"]["signal"]


def _error(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("config error: ")
    return msg


def test_library_config_errors_are_one_line_naming_the_key(library, tmp_path):
    directory = library[0]
    lib = ["data.kind=library", f"data.path={directory}"]
    assert "data.kind: must be one of analytic|library, got 'librari'" in _error(
        lambda: load_config(None, ["data.kind=librari"]))
    assert "data.pth: unknown key (did you mean data.path?)" in _error(lambda: load_config(None, ["data.pth=x"]))
    assert "data.path: a library run needs the library directory" in _error(
        lambda: load_config(None, ["data.kind=library"]))
    assert "data.validation_fraction: must lie in (0, 1)" in _error(
        lambda: load_config(None, [*lib, "data.validation_fraction=1.5"]))
    assert "protocol: not used with data.kind: library" in _error(
        lambda: load_config(None, [*lib, "protocol.kind=fixed"]))
    assert "model: not used with data.kind: library" in _error(lambda: load_config(None, [*lib, "model.name=noddi"]))
    missing = load_config(None, ["data.kind=library", f"data.path={tmp_path / 'nowhere'}"])
    assert "data.path: " in _error(lambda: build_simulator(missing)) and "no manifest.json" in _error(
        lambda: build_simulator(missing))
    too_small = load_config(None, [*lib, "training.batch_size=64"])
    assert "fewer than training.batch_size = 64" in _error(lambda: build_simulator(too_small))
    # a relative data.path in a YAML file is resolved against the file's folder
    (tmp_path / "run.yaml").write_text(f"data: {{kind: library, path: {directory.name}}}\ntraining: {{batch_size: 8}}\n")
    import shutil

    shutil.copytree(directory, tmp_path / directory.name)
    c = load_config(str(tmp_path / "run.yaml"))
    assert c.data.path == str(tmp_path / directory.name) and build_simulator(c).n_train == 36


def test_runs_stored_before_the_data_section_still_resume():
    from sbi_dmri.training.config import to_dict
    from sbi_dmri.training.loop import _check_same_run

    current = to_dict(load_config(None, ["training.steps=5"]))
    stored = {k: v for k, v in current.items() if k != "data"}
    _check_same_run(stored, current)  # the missing section holds its default: no error
    with pytest.raises(ConfigError, match="data.kind"):
        _check_same_run(stored, {**current, "data": {**current["data"], "kind": "library", "path": "x"}})


def test_held_out_draws_cycle_through_the_tail_and_a_changed_library_is_refused(library, tmp_path):
    from sbi_dmri.training.library_data import check_same_library, describe_library

    directory, params, _ = library
    sim = build_simulator(_config(directory))
    radius = np.asarray(jax.jit(lambda k: sim.simulate(k, 10).params["radius"])(jax.random.PRNGKey(0)))
    tail = np.sort(params[36:, 0].astype(np.float32))
    counts = [int(np.sum(np.isclose(radius, r, rtol=1e-6))) for r in tail]
    assert sorted(counts) == [2, 2, 3, 3]  # 10 draws over 4 held-out samples: each 2 or 3 times
    same = describe_library(str(directory))
    check_same_library(same, {**same, "path": "/moved/elsewhere"})  # a moved library resumes
    _toy_library(tmp_path / "other", seed=2)
    with pytest.raises(ConfigError, match="data.path: the library at .* is not the one this run started on"):
        check_same_library(same, describe_library(str(tmp_path / "other")))
