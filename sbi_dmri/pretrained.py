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

    @property
    def needs_snr(self) -> bool:
        """True when the posterior is conditioned on the voxel's SNR (`snr` argument, or estimated)."""
        return bool(getattr(self.network, "snr_input", False))

    def _check_acquisition(self, acquisition) -> None:
        """An `Acquisition` inside the network's training family, or a clear error."""
        if not isinstance(acquisition, Acquisition):
            raise TypeError(f"acquisition must be an sbi_dmri.Acquisition, got {type(acquisition).__name__}")
        self.protocol.check(acquisition)

    def batch(self, signals, acquisition: Acquisition, snr=None) -> dict:
        """The network batch for `signals` (B, M) measured with `acquisition` (checked against training).

        snr: S0/σ, a number or (B,), for networks conditioned on it (`needs_snr`); None estimates it from
            the b = 0 repeats (`resolve_snr`).
        """
        self._check_acquisition(acquisition)
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
        snr_v = jnp.asarray(resolve_snr(self, s, acquisition, snr)[0], jnp.float32) if self.needs_snr else None
        return self._build_batch(jnp.asarray(s), features, b0, jnp.asarray(acquisition.bvalues, jnp.float32),
                                 jnp.asarray(acquisition.directions, jnp.float32), snr_v)

    def posterior(self, signals, acquisition: Acquisition, *, n_samples: int = 1000, key=None, snr=None):
        """`sbi_dmri.networks.Posterior` of the voxels (sample, log_prob, mean, std, quantile, point).

        snr: S0/σ (a number or (B,)) for SNR-conditioned networks; None estimates it from the b0 repeats.
        """
        from .networks.posterior import Posterior

        return Posterior(self.network, self.batch(signals, acquisition, snr), self.space, n_samples=n_samples, key=key)

    def corrected_posterior(self, signals, acquisition: Acquisition, *, n_draws: int = 1000, key=None, snr=None,
                            min_ess: float = 0.0):
        """`sbi_dmri.inference.CorrectedPosterior`: the network's posterior importance-corrected by the analytic
        likelihood (weighted mean, std, quantile; sample by resampling; per-voxel Pareto k̂; voxels with fewer
        than `min_ess` effective draws drawn again with 4 × n_draws)."""
        from .inference.corrected_posterior import CorrectedPosterior

        return CorrectedPosterior(self, signals, acquisition, n_draws=n_draws, key=key, snr=snr, min_ess=min_ess)

    def estimate(self, signals, acquisition: Acquisition, *, snr=None, refine_steps: int | None = None
                 ) -> dict[str, np.ndarray]:
        """Point estimates {name: (B,) or (B, 3)} in the model's units, as `sbi-dmri infer --samples 0` writes them.

        The point head (one forward pass), refined by `refine_steps` damped Gauss–Newton steps on the analytic
        likelihood (`inference.point_refinement`; None: its default of 2 where the network has a noise model,
        0: the head alone). signals (B, M) raw or S/S0; snr as in `posterior`.
        """
        from .inference.engine import infer_voxels

        self._check_acquisition(acquisition)
        signals = np.asarray(signals, np.float32)
        maps = infer_voxels(self, signals[None] if signals.ndim == 1 else signals, acquisition, samples=0, snr=snr,
                            progress=False, refine_steps=refine_steps)
        return {k: np.asarray(v) for k, v in maps.mean.items()}

    def __repr__(self):
        return (f"PretrainedPosterior({self.model_name!r}, parameters={list(self.parameter_names)}, "
                f"step={self.meta.get('step')}, from {self.source!r})")


def resolve_snr(net, signals, acquisition: Acquisition, snr=None, valid=None) -> tuple[np.ndarray, str]:
    """(V,) SNR = S0/σ for an SNR-conditioned network, clipped to its training range, and a sentence on how.

    snr: a number or (V,) array given by the user; None estimates it (`noise.estimate_snr`: one σ from the
    b = 0 repeats of all `valid` voxels, S0 per voxel; with fewer than 2 b = 0 measurements, σ from the
    residuals of a quick DTI/DKI fit, `noise.estimate_sigma_from_residuals`, with a logged warning).
    Values outside the training SNR range are clipped to it (the network has not seen them) and the
    sentence says how many.
    """
    import logging

    from .noise import estimate_sigma_from_residuals, estimate_snr

    s = np.asarray(signals)
    V = s.shape[0]
    b0 = np.asarray(acquisition.bvalues) <= B0_THRESHOLD
    if snr is None and int(b0.sum()) < 2:
        # no b=0 repeats: σ from the residuals of a quick DTI/DKI fit instead (biased high where it misfits)
        sigma, model, n_fit = estimate_sigma_from_residuals(s, acquisition.bvalues, acquisition.directions, valid=valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            s0 = np.mean(s[:, b0], axis=1) if b0.any() else np.full(V, np.nan)
        values = np.where(np.isfinite(s0) & (s0 > 0), s0 / sigma, np.nan)
        how = (f"estimated from the residuals of a {model} fit ({n_fit} voxels; only {int(b0.sum())} b=0 "
               f"measurement): one σ = {sigma:.4g}, S0 per voxel; a lower bound where {model} misfits, "
               "pass snr (--snr) if the scan's SNR is known")
    elif snr is None:
        values, sigma = estimate_snr(s, b0, valid=valid)
        how = f"estimated: one σ = {sigma:.4g} (median b=0 spread over the voxels), S0 per voxel"
    else:
        values = np.broadcast_to(np.asarray(snr, np.float64), (V,)).copy()
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError("snr must be positive and finite")
        how = "given"
    noise = net.meta.get("noise") or {}
    lo, hi = (float(v) for v in noise.get("snr", (0.0, np.inf)))
    finite = np.isfinite(values)
    outside = int(np.sum(finite & ((values < lo) | (values > hi))))
    values = np.where(finite, np.clip(values, lo, hi), np.sqrt(lo * hi))
    note = f"SNR {how}; median {np.median(values):.3g}"
    if outside:
        note += f"; {outside} of {V} voxels outside the training range [{lo:g}, {hi:g}] were clipped to it"
    if snr is None and int(b0.sum()) < 2:
        logging.getLogger(__name__).warning("%s", note)  # a guess the user should see, not only a note
    return values, note


def _build_batch(signals, features, b0, bvalues, directions, snr=None):
    from .networks.parameter_space import dti_frame

    B, M = signals.shape
    s0 = jnp.sum(jnp.where(b0[None, :], signals, 0.0), axis=1) / jnp.sum(b0)
    s0 = jnp.where(s0 > 0, s0, 1.0)
    signals = signals / s0[:, None]
    mask = jnp.ones((B, M), bool)
    frame = dti_frame(signals, mask, bvalues, directions)
    batch = {"signals": signals, "mask": mask, "protocol": features, "frame": frame}
    if snr is not None:
        batch["snr"] = snr
    return batch


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
    from .training.data import model_and_prior_for_checkpoint
    from .training.loop import build_network
    from .training.protocols import protocol_from_json

    folder = resolve_checkpoint(path_or_name)
    meta = read_meta(folder)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint {folder} has format {meta.get('format')}; this version reads {FORMAT_VERSION}")
    if model is not None and model != meta["model"]:
        raise ValueError(f"checkpoint {folder} was trained for model {meta['model']!r}, not {model!r}")
    config = from_dict(meta["config"])
    tissue, prior = model_and_prior_for_checkpoint(config, meta)  # a Monte Carlo library's from meta["library"]
    space = ParameterSpace(tissue, prior, stats=meta["stats"])
    protocol = protocol_from_json(meta["protocol"])
    abstract = nnx.eval_shape(lambda: build_network(config, space, meta["n_measurements"], rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    restored = restore_model_state(folder, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, restored)
    return PretrainedPosterior(nnx.merge(graphdef, state), space, protocol, meta, folder)
