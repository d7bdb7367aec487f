"""Which checkpoint a path or name resolves to (no training needed), and the W&B tracker offline."""

import os

import pytest

from sbi_dmri.pretrained import resolve_checkpoint
from sbi_dmri.training.checkpoint import find_step_folder


def _step(folder):
    os.makedirs(os.path.join(folder, "model"))
    os.makedirs(os.path.join(folder, "meta"))
    return str(folder)


def test_workdir_resolves_to_final_unless_best_is_newer(tmp_path):
    root = tmp_path / "checkpoints"
    _step(root / "latest" / "30")
    assert find_step_folder(str(tmp_path)).endswith("latest/30")  # no evaluation yet
    _step(root / "best" / "20")
    assert find_step_folder(str(tmp_path)).endswith("best/20")
    _step(root / "final" / "20")
    assert find_step_folder(str(tmp_path)).endswith("final/20")  # same weights, with diagnostics
    _step(root / "best" / "40")  # a longer rerun found a better step: its best wins over the old final
    assert find_step_folder(str(tmp_path)).endswith("best/40")
    assert find_step_folder(str(root / "latest")).endswith("latest/30")  # a manager folder: newest step
    assert find_step_folder(str(root / "best" / "20")).endswith("best/20")  # a step folder itself


def test_names_resolve_through_the_checkpoint_search_path(tmp_path, monkeypatch):
    shipped = _step(tmp_path / "store" / "my_net")
    monkeypatch.setenv("SBI_DMRI_CHECKPOINTS", str(tmp_path / "store"))
    assert resolve_checkpoint("my_net") == shipped
    with pytest.raises(FileNotFoundError, match="no checkpoint 'nope'"):
        resolve_checkpoint("nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="expected a step folder"):
        resolve_checkpoint(str(empty))


@pytest.mark.slow
def test_wandb_tracker_writes_an_offline_run(tmp_path, monkeypatch):
    import json

    from sbi_dmri.training.config import TrackingConfig
    from sbi_dmri.training.tracking import make_tracker, read_metrics

    monkeypatch.delenv("WANDB_MODE", raising=False)
    t = make_tracker(TrackingConfig(backend="wandb"), str(tmp_path), {"training": {"steps": 2}})
    t.log(1, {"loss": 2.0})
    t.log(2, {"loss": 1.5})
    t.close()
    runs = [d for d in os.listdir(tmp_path / "wandb") if d.startswith("offline-run-")]
    assert len(runs) == 1  # `wandb sync` uploads it later
    assert [r["loss"] for r in read_metrics(str(tmp_path))] == [2.0, 1.5]
    json.dumps(read_metrics(str(tmp_path)))
