"""Trained amortized posteriors for inference: `load_pretrained(path_or_name)`.

    net = load_pretrained("ball_stick")            # shipped: checkpoints/ball_stick/
    net = load_pretrained("runs/bs1")              # a training workdir: its best checkpoint
    post = net.posterior(signals, acquisition)     # networks.Posterior: sample, mean, std, quantile
    maps = net.estimate(signals, acquisition)      # point estimates {name: (B,) | (B, 3)}

Restoring rebuilds the network from the resolved config stored beside the weights and loads only
the `model` item: no optimiser is built, no simulator runs, no FSL file is read (a fixed training
protocol is stored in the checkpoint itself).

Where names are looked up (the first that exists wins):
1. `path_or_name` as a path: a checkpoint step folder (with `model/` and `meta/`), a checkpoint
   manager folder (its newest step), or a training workdir (its best step, else its latest);
2. `$SBI_DMRI_CHECKPOINTS/<name>`;
3. `checkpoints/<name>/` at the repository root (a source checkout: where shipped networks live);
4. `sbi_dmri/checkpoints/<name>/` inside the installed package (for wheels that bundle them).
A shipped checkpoint is a copied step folder (`checkpoints/best/<step>/` of a training workdir).

Signals are normalised here by each voxel's mean b = 0 signal, exactly as in training, so raw
scanner intensities and S/S0 both work. The acquisition must belong to the protocol family the
network was trained on (same shells, direction counts and δ/Δ ranges; or the same fixed protocol):
anything else is a ValueError saying what differs, because the network would silently extrapolate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .acquisition import B0_THRESHOLD, Acquisition


class PretrainedPosterior:
    """A restored amortized posterior network with its parameter space and training protocol.

    Attributes:
        model_name: registry name of the tissue model it infers.
        parameter_names: the free parameters it returns.
        meta: everything stored beside the weights (config, stats, diagnostics, version, step).
    """

    def __init__(self, network, space, protocol, meta: Mapping, source: str):
        self.network, self.space, self.protocol = network, space, protocol
        self.meta = dict(meta)
        self.model_name = self.meta["model"]
        self.parameter_names = tuple(self.meta["parameter_names"])
        self.source = source
        self._build_batch = jax.jit(_build_batch)

    def batch(self, signals, acquisition: Acquisition) -> dict:
        """The network batch for `signals` (B, M) measured with `acquisition` (checked against training)."""
        if not isinstance(acquisition, Acquisition):
            raise TypeError(f"acquisition must be an sbi_dmri.Acquisition, got {type(acquisition).__name__}")
        self.protocol.check(acquisition)
        s = np.asarray(signals, np.float32)
        if s.ndim == 1:
            s = s[None, :]
        if s.ndim != 2 or s.shape[1] != acquisition.n_measurements:
            raise ValueError(
                f"signals have shape {np.shape(signals)}; expected (n_voxels, {acquisition.n_measurements}) "
                "for this acquisition"
            )
        if not np.all(np.isfinite(s)):
            raise ValueError("signals contain NaN or inf")
        from .networks.features import protocol_features

        # TE is not a training feature (training protocols carry none): drop it so features match.
        acq = Acquisition(bvalues=acquisition.bvalues, directions=acquisition.directions, delta=acquisition.delta,
                          Delta=acquisition.Delta, TE=None)
        features = protocol_features(acq)
        b0 = jnp.asarray(acquisition.bvalues <= B0_THRESHOLD)
        return self._build_batch(jnp.asarray(s), features, b0, jnp.asarray(acquisition.bvalues, jnp.float32),
                                 jnp.asarray(acquisition.directions, jnp.float32))

    def posterior(self, signals, acquisition: Acquisition, *, n_samples: int = 1000, key=None):
        """`sbi_dmri.networks.Posterior` of the voxels (sample, log_prob, mean, std, quantile, point)."""
        from .networks.posterior import Posterior

        return Posterior(self.network, self.batch(signals, acquisition), self.space, n_samples=n_samples, key=key)

    def estimate(self, signals, acquisition: Acquisition) -> dict[str, np.ndarray]:
        """Point estimates from the point head (one forward pass): {name: (B,) or (B, 3)} in the model's units."""
        point = self.posterior(signals, acquisition, n_samples=1).point()
        return {k: np.asarray(v) for k, v in point["estimate"].items()}

    def __repr__(self):
        return (f"PretrainedPosterior({self.model_name!r}, parameters={list(self.parameter_names)}, "
                f"step={self.meta.get('step')}, from {self.source!r})")


def _build_batch(signals, features, b0, bvalues, directions):
    from .networks.parameter_space import dti_frame

    B, M = signals.shape
    s0 = jnp.sum(jnp.where(b0[None, :], signals, 0.0), axis=1) / jnp.sum(b0)
    s0 = jnp.where(s0 > 0, s0, 1.0)
    signals = signals / s0[:, None]
    mask = jnp.ones((B, M), bool)
    frame = dti_frame(signals, mask, bvalues, directions)
    return {"signals": signals, "mask": mask, "protocol": features, "frame": frame}


def resolve_checkpoint(path_or_name: str) -> str:
    """The step folder `path_or_name` names (see the module docstring for the search order)."""
    from .training.checkpoint import find_step_folder

    if os.path.exists(path_or_name):
        return find_step_folder(path_or_name)
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    if os.environ.get("SBI_DMRI_CHECKPOINTS"):
        candidates.append(os.path.join(os.environ["SBI_DMRI_CHECKPOINTS"], path_or_name))
    candidates += [os.path.join(os.path.dirname(here), "checkpoints", path_or_name),
                   os.path.join(here, "checkpoints", path_or_name)]
    for c in candidates:
        if os.path.isdir(c):
            return find_step_folder(c)
    raise FileNotFoundError(f"no checkpoint {path_or_name!r}: not a path, and not found in {candidates}")


def load_pretrained(path_or_name: str, *, model: str | None = None) -> PretrainedPosterior:
    """Restore a trained network for inference (no optimiser); see the module docstring.

    Args:
        path_or_name: a shipped checkpoint name, a checkpoint folder or a training workdir.
        model: if given, the tissue model you expect; a checkpoint for another model is a ValueError.
    """
    from .networks.parameter_space import ParameterSpace
    from .training.checkpoint import FORMAT_VERSION, read_meta, restore_model_state
    from .training.config import from_dict
    from .training.data import build_model_and_prior
    from .training.loop import build_network
    from .training.protocols import protocol_from_json

    folder = resolve_checkpoint(path_or_name)
    meta = read_meta(folder)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint {folder} has format {meta.get('format')}; this version reads {FORMAT_VERSION}")
    if model is not None and model != meta["model"]:
        raise ValueError(f"checkpoint {folder} was trained for model {meta['model']!r}, not {model!r}")
    config = from_dict(meta["config"])
    tissue, prior = build_model_and_prior(config)
    space = ParameterSpace(tissue, prior, stats=meta["stats"])
    protocol = protocol_from_json(meta["protocol"])
    abstract = nnx.eval_shape(lambda: build_network(config, space, meta["n_measurements"], rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    restored = restore_model_state(folder, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, restored)
    return PretrainedPosterior(nnx.merge(graphdef, state), space, protocol, meta, folder)
