"""Orbax checkpoints without pickles (ARCHITECTURE.md, decision 8).

Layout of a training workdir:

    <workdir>/checkpoints/latest/<step>/{model, optimizer, meta[, data]}  the last `keep` steps: resume here
    <workdir>/checkpoints/best/<step>/{model, meta}                the lowest validation loss
    <workdir>/checkpoints/final/<step>/{model, meta}               the best weights again, with the final
                                                                   diagnostics in meta: infer from here

`model` and `optimizer` are Orbax PyTree items of plain arrays (the NNX states as pure dicts); `meta`
is a JSON item: resolved config, normaliser statistics, parameter names, protocol description,
package version, step, validation loss and measured diagnostics; `data` (JSON, runs streaming a Monte
Carlo library only) is the Grain iterator state at that step. A step folder is self-contained:
copied anywhere (e.g. to `checkpoints/<name>/` for shipping) it restores on its own, and `model`
restores without building the optimiser.

Orbax writes each step into a temporary folder and renames it when complete, so a process killed
at any moment leaves either the previous checkpoint or the new one, never a torn one; rerunning the
same command resumes from the newest complete step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import orbax.checkpoint as ocp
from flax import nnx

#: Version of the `meta` layout; bump when its keys change meaning.
FORMAT_VERSION = 1


def _options(keep: int) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, cleanup_tmp_directories=True, enable_async_checkpointing=False,
    )


class TrainingCheckpoints:
    """The latest/best pair of `CheckpointManager`s of one workdir."""

    def __init__(self, workdir: str, keep: int = 2):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.latest = ocp.CheckpointManager(
            os.path.join(root, "latest"), options=_options(keep), item_names=("model", "optimizer", "meta", "data")
        )
        self.best = ocp.CheckpointManager(os.path.join(root, "best"), options=_options(1), item_names=("model", "meta"))
        self.final = ocp.CheckpointManager(os.path.join(root, "final"), options=_options(1), item_names=("model", "meta"))

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save_latest(self, step: int, model: nnx.Module, optimizer: nnx.Optimizer, meta: Mapping,
                    data_state: Mapping | None = None) -> None:
        """Save weights, optimiser and meta; `data_state` (a Grain iterator's `get_state()`) as the `data` item."""
        items = dict(
            model=ocp.args.StandardSave(nnx.to_pure_dict(nnx.state(model))),
            optimizer=ocp.args.StandardSave(nnx.to_pure_dict(nnx.state(optimizer))),
            meta=ocp.args.JsonSave(_jsonable(meta)),
        )
        if data_state is not None:
            items["data"] = ocp.args.JsonSave(_jsonable(data_state))
        self.latest.save(step, args=ocp.args.Composite(**items), force=True)

    def restore_data_state(self, step: int) -> dict | None:
        """The Grain iterator state saved with latest step `step`, or None when that step has none."""
        if not os.path.isdir(os.path.join(str(self.latest.directory), str(step), "data")):
            return None
        return dict(self.latest.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"])

    def save_best(self, step: int, model: nnx.Module, meta: Mapping) -> None:
        self.best.save(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardSave(nnx.to_pure_dict(nnx.state(model))), meta=ocp.args.JsonSave(_jsonable(meta))
            ),
            force=True,
        )

    def restore_latest(self, model: nnx.Module, optimizer: nnx.Optimizer) -> tuple[int, dict]:
        """Load the newest complete step into `model` and `optimizer` in place; return (step, meta)."""
        step = self.latest.latest_step()
        model_state, opt_state = nnx.state(model), nnx.state(optimizer)
        out = self.latest.restore(
            step,
            args=ocp.args.Composite(
                model=ocp.args.StandardRestore(nnx.to_pure_dict(model_state)),
                optimizer=ocp.args.StandardRestore(nnx.to_pure_dict(opt_state)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        nnx.replace_by_pure_dict(model_state, out["model"])
        nnx.replace_by_pure_dict(opt_state, out["optimizer"])
        nnx.update(model, model_state)
        nnx.update(optimizer, opt_state)
        return step, dict(out["meta"])

    def best_meta(self) -> dict | None:
        step = self.best.latest_step()
        if step is None:
            return None
        return dict(self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def save_final(self, extra: Mapping) -> None:
        """Copy the best step into `final` with `extra` (e.g. the diagnostics) added to its meta.

        A new folder rather than rewriting `best`: a kill at any moment leaves a complete best step.
        """
        step = self.best.latest_step()
        out = self.best.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        meta = {**dict(out["meta"]), **extra}
        for old in self.final.all_steps():
            if old >= step:  # a rerun with more steps can end on the same best step
                self.final.delete(old)
        self.final.save(
            step,
            args=ocp.args.Composite(model=ocp.args.StandardSave(out["model"]), meta=ocp.args.JsonSave(_jsonable(meta))),
            force=True,
        )

    def close(self) -> None:
        for m in (self.latest, self.best, self.final):
            m.wait_until_finished()
            m.close()


# ---------------------------------------------------------------------------- step folders (inference)
def is_step_folder(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "model")) and os.path.isdir(os.path.join(path, "meta"))


def find_step_folder(path: str) -> str:
    """The checkpoint step folder that `path` names: a step folder, a manager folder (its newest step),
    or a training workdir (final, unless best holds a newer step; else latest). Raises FileNotFoundError
    saying what it looked for."""
    path = os.path.abspath(path)
    if is_step_folder(path):
        return path
    steps = _numeric_children(path)
    if steps:
        return os.path.join(path, str(max(steps)))
    root = os.path.join(path, "checkpoints")
    final, best = _numeric_children(os.path.join(root, "final")), _numeric_children(os.path.join(root, "best"))
    if final and (not best or max(final) >= max(best)):
        return os.path.join(root, "final", str(max(final)))
    for name in ("best", "latest"):
        steps = _numeric_children(os.path.join(root, name))
        if steps:
            return os.path.join(root, name, str(max(steps)))
    raise FileNotFoundError(
        f"no checkpoint in {path}: expected a step folder (with model/ and meta/), a checkpoint manager "
        "folder of numbered steps, or a training workdir with checkpoints/best"
    )


def read_meta(step_folder: str) -> dict:
    return dict(ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(os.path.join(step_folder, "meta")))


def restore_model_state(step_folder: str, target: Mapping) -> dict:
    """The `model` item as a pure dict shaped like `target` (abstract arrays are enough)."""
    return ocp.StandardCheckpointer().restore(os.path.join(step_folder, "model"), dict(target))


def _numeric_children(folder: str) -> list[int]:
    if not os.path.isdir(folder):
        return []
    return [int(n) for n in os.listdir(folder) if n.isdigit() and is_step_folder(os.path.join(folder, n))]


def _jsonable(x):
    """JSON round-trippable copy (NumPy/JAX scalars and arrays become Python numbers and lists)."""
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def export_checkpoint(workdir_or_folder: str, destination: str) -> str:
    """Copy the checkpoint that `workdir_or_folder` resolves to (see `find_step_folder`) into `destination`
    (e.g. `checkpoints/<name>/` to ship it), with its meta also as a readable `model_card.json`.

    Refuses to overwrite an existing destination. Returns the destination path.
    """
    import shutil

    source = find_step_folder(workdir_or_folder)
    if os.path.exists(destination):
        raise FileExistsError(f"{destination} exists; remove it first or choose another name")
    tmp = destination.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    with open(os.path.join(tmp, "model_card.json"), "w", encoding="utf-8") as fh:
        json.dump(read_meta(source), fh, indent=1)
        fh.write("\n")
    os.replace(tmp, destination)  # all or nothing
    return destination
