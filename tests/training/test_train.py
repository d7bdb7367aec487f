"""The real training loop on configs/tiny.yaml: end to end, restore in a fresh process, resume after kill -9."""

import json
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from sbi_dmri.training.checkpoint import find_step_folder, read_meta
from sbi_dmri.training.config import ConfigError, load_config
from sbi_dmri.training.tracking import read_metrics

from .conftest import TINY, run_child, train_child, train_child_and_kill


@pytest.fixture(scope="module")
def reference(tmp_path_factory, child_env):
    workdir = tmp_path_factory.mktemp("tiny_reference")
    return workdir, train_child(workdir, child_env)


def _weights(step_folder) -> list[np.ndarray]:
    tree = ocp.StandardCheckpointer().restore(os.path.join(step_folder, "model"))
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_tiny_config_trains_end_to_end(reference):
    workdir, summary = reference
    config = load_config(TINY)
    assert summary["steps"] == config.training.steps and summary["resumed_from"] == 0
    assert summary["train_step_traces"] == 1  # one trace for all 40 steps
    rows = read_metrics(workdir)
    train = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(train) == config.training.steps // config.training.log_every
    assert np.all(np.isfinite(train)) and np.mean(train[-2:]) < train[0]  # it learns
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs[-1] < max(lrs)  # cosine decay after warmup
    assert sum("val/loss" in r for r in rows) == 2  # steps 20 and 40
    meta = read_meta(find_step_folder(str(workdir)))
    assert meta["model"] == "ball_stick" and meta["parameter_names"] == ["orientation", "d_par", "f_stick"]
    assert meta["config"]["training"]["steps"] == 40 and len(meta["stats"]["mean"]) == 4
    assert meta["val_loss"] == pytest.approx(summary["best_val_loss"])
    diag = meta["diagnostics"]  # measured on the best weights, stored beside them in checkpoints/final
    assert "/checkpoints/final/" in find_step_folder(str(workdir))
    assert set(diag["coverage"]) == {"0.50", "0.80", "0.90", "0.95"} and 0 <= diag["sbc_ks_p"]["d_par"] <= 1
    assert all(os.path.isfile(p) for p in diag["plots"].values()) and len(diag["plots"]) == 3


RESTORE = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from sbi_dmri import models
from sbi_dmri.acquisition import Acquisition
from sbi_dmri.pretrained import load_pretrained
net = load_pretrained(sys.argv[1])
leaves = jax.tree_util.tree_leaves(__import__("flax").nnx.state(net.network))
rng = np.random.default_rng(0)
b = np.r_[0, 0, np.full(8, 1.0), np.full(8, 2.0)]
g = rng.normal(size=(18, 3)); g /= np.linalg.norm(g, axis=1, keepdims=True)
acq = Acquisition.pgse(b, g, delta=15.0, Delta=30.0)
truth = {"orientation": jnp.array([[0, 0, 1.0]] * 4), "d_par": jnp.array([0.5, 1.0, 1.5, 2.0]),
         "f_stick": jnp.array([0.2, 0.4, 0.6, 0.8])}
signals = 1000.0 * np.asarray(jax.vmap(models.get("ball_stick", d_iso=3.0).signal, in_axes=(None, 0))(acq, truth))
# noise-free signals: no b0 spread to estimate the SNR from, so the SNR-conditioned network is given one
est = net.estimate(signals, acq, snr=30.0)
post = net.posterior(signals, acq, n_samples=64, snr=30.0)
errors = {}
try:
    load_pretrained(sys.argv[1], model="noddi")
except ValueError as e:
    errors["model"] = str(e)
try:
    net.estimate(signals[:, :10], acq.select(np.arange(10)))
except ValueError as e:
    errors["protocol"] = str(e)
print(json.dumps({"n_leaves": len(leaves), "sum": float(sum(np.abs(np.asarray(x)).sum() for x in leaves)),
                  "names": list(net.parameter_names), "f_stick": est["f_stick"].tolist(),
                  "d_par_draws": np.asarray(post.draws["d_par"]).shape, "errors": errors}))
"""


def test_restores_in_a_fresh_process_and_refuses_other_models_and_protocols(reference, child_env):
    workdir, _ = reference
    out = json.loads(run_child(RESTORE, [workdir], child_env).splitlines()[-1])
    saved = _weights(find_step_folder(str(workdir)))  # the best checkpoint's weights, read raw
    assert out["n_leaves"] == len(saved)
    assert out["sum"] == pytest.approx(sum(float(np.abs(x).sum()) for x in saved), rel=1e-6)
    assert out["names"] == ["orientation", "d_par", "f_stick"]
    assert all(0.0 <= f <= 1.0 for f in out["f_stick"]) and out["d_par_draws"] == [4, 64]
    assert "trained for model 'ball_stick', not 'noddi'" in out["errors"]["model"]
    assert "outside the network's training protocol family" in out["errors"]["protocol"]
    assert "1 shells" in out["errors"]["protocol"]


def test_resumes_after_kill_9_and_matches_the_uninterrupted_run(reference, child_env, tmp_path):
    ref_dir, _ = reference
    killed_at = train_child_and_kill(tmp_path, child_env)
    assert killed_at == 10
    summary = train_child(tmp_path, child_env)
    assert summary["resumed_from"] == killed_at and summary["steps"] == 40
    # Data depend only on (seed, step), and the restored state is the saved one bit for bit: the
    # final weights equal those of the run that was never interrupted.
    final = os.path.join(str(tmp_path), "checkpoints", "latest", "40")
    reference_final = os.path.join(str(ref_dir), "checkpoints", "latest", "40")
    for a, b in zip(_weights(final), _weights(reference_final)):
        np.testing.assert_array_equal(a, b)


def test_export_copies_the_final_checkpoint_with_a_model_card(reference, tmp_path):
    from sbi_dmri.pretrained import resolve_checkpoint
    from sbi_dmri.training.checkpoint import export_checkpoint

    workdir, _ = reference
    dest = export_checkpoint(str(workdir), str(tmp_path / "tiny_ball_stick"))
    assert resolve_checkpoint(dest) == dest
    card = json.load(open(os.path.join(dest, "model_card.json")))
    assert card == read_meta(dest) and "diagnostics" in card
    for a, b in zip(_weights(dest), _weights(find_step_folder(str(workdir)))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileExistsError):
        export_checkpoint(str(workdir), dest)


def test_workdir_of_another_run_is_refused(reference):
    from sbi_dmri.training.loop import train_and_evaluate

    workdir, _ = reference
    with pytest.raises(ConfigError, match="optimizer.lr: the workdir holds a run with 0.003, not 0.01"):
        train_and_evaluate(load_config(TINY, ["optimizer.lr=0.01"]), str(workdir))
