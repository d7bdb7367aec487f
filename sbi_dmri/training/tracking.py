"""Experiment tracking behind a small interface (ARCHITECTURE.md, decision 9).

`make_tracker(config.tracking, workdir, run_config)` returns a `Tracker`:
- `none`: records nothing beyond `metrics.jsonl` in the workdir (always written, so a run's curves can
  be read back without any service);
- `wandb`: Weights & Biases, imported only when asked for, offline by default (`WANDB_MODE=offline`
  unless the environment already sets it): runs are written under `<workdir>/wandb` and
  `wandb sync <workdir>/wandb/offline-run-*` uploads them later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from .config import TrackingConfig


class Tracker:
    """Logs scalar metrics per step (to `<workdir>/metrics.jsonl`) and figures; subclasses forward them."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        os.makedirs(workdir, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def log_figure(self, step: int, name: str, figure) -> None:
        """A matplotlib figure; the base tracker saves it as `<workdir>/plots/<name>_<step>.png`."""
        folder = os.path.join(os.path.dirname(self.path), "plots")
        os.makedirs(folder, exist_ok=True)
        figure.savefig(os.path.join(folder, f"{name}_{int(step):08d}.png"), dpi=100)

    def log_image(self, step: int, name: str, path: str) -> None:
        """An image file already written (e.g. a diagnostics plot); the base tracker keeps it where it is."""

    def close(self) -> None:
        self._fh.close()


class WandbTracker(Tracker):
    """W&B run under `<workdir>/wandb`; the mode comes from WANDB_MODE or the config (default offline)."""

    def __init__(self, workdir: str, config: TrackingConfig, run_config: Mapping):
        super().__init__(workdir)
        import wandb  # lazy: heavy, and optional

        self._wandb = wandb
        self._run = wandb.init(
            project=config.project, dir=workdir, config=dict(run_config),
            mode=os.environ.get("WANDB_MODE", config.mode),
            name=os.path.basename(os.path.abspath(workdir)), resume="allow",
            id=_run_id(workdir),
        )

    def log(self, step, metrics):
        super().log(step, metrics)
        self._run.log(dict(metrics), step=int(step))

    def log_figure(self, step, name, figure):
        super().log_figure(step, name, figure)
        self._run.log({name: self._wandb.Image(figure)}, step=int(step))

    def log_image(self, step, name, path):
        self._run.log({name: self._wandb.Image(path)}, step=int(step))

    def close(self):
        super().close()
        self._run.finish()


def _run_id(workdir: str) -> str:
    """A stable run id per workdir, so a resumed training continues the same W&B run."""
    path = os.path.join(workdir, "wandb_run_id")
    if os.path.exists(path):
        return open(path, encoding="utf-8").read().strip()
    import uuid

    rid = uuid.uuid4().hex[:12]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(rid)
    return rid


def make_tracker(config: TrackingConfig, workdir: str, run_config: Mapping) -> Tracker:
    if config.backend == "wandb":
        return WandbTracker(workdir, config, run_config)
    return Tracker(workdir)


def read_metrics(workdir: str) -> list[dict]:
    """The rows of `<workdir>/metrics.jsonl` (what any tracker logged)."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
