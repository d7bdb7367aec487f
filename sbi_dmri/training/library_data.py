"""Training from a Monte Carlo signal library on disk (ARCHITECTURE.md, decision 6; `data: {kind: library}`).

    library shards ──Grain: train indices → repeat → shuffle(seed, per epoch) → batch → gather──► host
        {signal (B, M) clean E, params (B, P)} ──jitted step: noise at SNR ~ range, ÷ mean noisy b0──►
        network batch (θ in the prior's unconstrained space, as for analytic models)

What the library fixes and the run inherits:
- parameters: the substrate family's (e.g. radius µm, diffusivity µm²/ms) with the uniform prior on
  the box the manifest records (`simulate_library` draws them uniformly there). A parameter whose
  range is a single value is constant: it leaves the posterior and is reported under "fixed".
- protocol: the library's own acquisition, a `FixedProtocol` (inference on any other protocol is a
  ValueError, as for analytic fixed protocols).
- held-out set: the last `data.validation_fraction` of the samples (parameters are i.i.d., so the
  tail is a random subset); validation and the end-of-training calibration diagnostics draw from it
  (each held-out sample once per V draws, fresh noise), training never sees it.

Determinism and resume: the noise of step s comes from `fold_in(data_key, s)`, and the Grain iterator
state (the index of the next batch) is saved in every "latest" checkpoint (the `data` item) and
restored on resume, so a run killed and rerun sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np

from ..models.base import Model, Parameter
from ..priors import Prior, Uniform
from .config import Config, ConfigError, NoiseConfig
from .data import Simulation, observe
from .protocols import FixedProtocol

#: Units of the substrate parameters that `simulators.montecarlo.library` knows (others: "").
UNITS = {"radius": "µm", "spacing": "µm", "diffusivity": "µm²/ms"}
#: Library parameter values are float32 on disk: clip this fraction of the range inside the bounds so
#: a value rounded onto a bound keeps a finite logit.
BOUND_MARGIN = 1e-5
#: Grain read threads and batches prefetched ahead of the training step.
READ_THREADS, PREFETCH_BATCHES = 2, 4


class LibraryModel(Model):
    """A library's substrate parameters as a `Model` (names, units, bounds); it has no closed-form signal."""

    has_closed_form = False

    def __init__(self, family: str, parameters: tuple[Parameter, ...], fixed: dict[str, float]):
        self.name = f"mc_library:{family}"
        self.parameters = tuple(parameters)
        self.fixed = dict(fixed)
        self.description = f"Monte Carlo library of {family} substrates" + (f" (fixed {self.fixed})" if fixed else "")

    def signal(self, acquisition, params):
        raise NotImplementedError(f"{self.name} has no closed-form signal: its signals exist only in the library")


def describe_library(path: str) -> dict:
    """What a run records about its library (JSON): family, parameters, ranges, sizes, manifest digest."""
    from ..simulators.montecarlo.library import read_manifest

    try:
        manifest = read_manifest(path)
    except (OSError, ValueError) as e:
        raise ConfigError("data.path", str(e)) from None
    with open(os.path.join(path, "manifest.json"), "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()  # covers the shards: their digests are in it
    return {"path": os.path.abspath(path), "substrate_family": manifest["substrate_family"],
            "parameter_names": list(manifest["parameter_names"]), "ranges": manifest["ranges"],
            "n_samples": int(sum(s["n"] for s in manifest["shards"])), "manifest_sha256": digest}


def library_model_and_prior(description: dict) -> tuple[LibraryModel, Prior]:
    """The model and uniform prior of the library's free parameters (those with a range of positive width)."""
    params, fixed = [], {}
    for name in description["parameter_names"]:
        lo, hi = (float(v) for v in description["ranges"][name])
        if hi > lo:
            params.append(Parameter(name, UNITS.get(name, ""), lo, hi, description=f"{name} of the substrate"))
        else:
            fixed[name] = lo
    if not params:
        raise ConfigError("data.path", "every parameter of the library has a single value: nothing to infer")
    return LibraryModel(description["substrate_family"], tuple(params), fixed), Prior(
        [Uniform(p.name, p.lower, p.upper) for p in params])


@dataclasses.dataclass(frozen=True, eq=False)
class LibrarySimulator:
    """A library's training voxels: Grain batches for training, the held-out part for validation.

    Attributes:
        model, prior: `library_model_and_prior`. protocol: the library's acquisition. noise: from the config.
        description: `describe_library` plus n_train / n_validation (stored in checkpoints as meta["library"]).
        columns: indices of the free parameters among the library's `params` columns.
        held_signal, held_params: (V, M) clean E and (V, P) parameters of the held-out samples.
    """

    model: LibraryModel
    prior: Prior
    protocol: FixedProtocol
    noise: NoiseConfig
    description: dict
    columns: tuple[int, ...]
    held_signal: jax.Array
    held_params: jax.Array

    @property
    def n_train(self) -> int:
        return self.description["n_train"]

    def observe(self, key, signal, params, groups: int = 1) -> Simulation:
        """Noisy, b0-normalised voxels from clean library signals (B, M) and parameters (B, P) (inside `jit`).

        groups: the fixed protocol is the same for every voxel, so one group (one protocol feature table).
        """
        k_snr, k_noise = jax.random.split(key)
        n = signal.shape[0]
        acq, mask = self.protocol.sample(None)
        acq, mask = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), (acq, mask))
        named = {}
        for f, c in zip(self.prior.factors, self.columns):
            margin = BOUND_MARGIN * (f.upper - f.lower)
            named[f.names[0]] = jnp.clip(params[:, c].astype(jnp.float32), f.lower + margin, f.upper - margin)
        return observe(k_snr, k_noise, named, acq, mask, signal.astype(jnp.float32), self.noise, groups)

    def simulate(self, key, n: int, groups: int = 1) -> Simulation:
        """`n` held-out samples with fresh noise (validation, diagnostics): a random permutation of the V
        held-out samples, cycled when n > V, so each is used ⌊n/V⌋ or ⌈n/V⌉ times.

        With n > V the draws share truths: calibration tests that assume independent draws (the SBC KS
        test) then see fewer independent truths than n; hold out at least `evaluation.n_sims` samples.
        """
        k_pick, k_obs = jax.random.split(key)
        V = self.held_signal.shape[0]
        i = jax.random.permutation(k_pick, V)[jnp.arange(n) % V]
        return self.observe(k_obs, self.held_signal[i], self.held_params[i], groups or 1)

    def dataset(self, batch_size: int, seed: int) -> grain.MapDataset:
        """The training stream: the first `n_train` samples, shuffled (differently every epoch), repeated
        forever, in batches of {"signal" (B, M), "params" (B, P)}. Batch k is `dataset[k]`.

        Shuffling and batching act on sample indices: epoch e is the permutation
        `default_rng([seed, e]).permutation(n_train)` (`epoch_shuffle`); each batch is then read with one
        vectorised gather per shard (`MonteCarloLibrarySource.take`), not item by item.
        """
        from ..simulators.montecarlo.library import MonteCarloLibrarySource

        source = MonteCarloLibrarySource(self.description["path"])
        return (grain.MapDataset.range(self.n_train).repeat().map_with_index(epoch_shuffle(self.n_train, seed))
                .batch(batch_size, drop_remainder=True)
                .map(lambda idx: source.take(idx, ("signal", "params"))))


def epoch_shuffle(n: int, seed: int):
    """`(i, i mod n) -> sample index` of stream position i: a fresh permutation of range(n) per epoch i // n.

    Grain's `MapDataset.shuffle` gives the same kind of per-epoch global shuffle, but its per-index
    `index_shuffle` call measured 0.36 ms here (2-core CPU at load 8): a 2,100 samples/s ceiling on
    training, below the train step itself (benchmarks/library_stream.py). One NumPy permutation per
    epoch, cached, costs microseconds per sample.
    """

    @functools.lru_cache(maxsize=4)
    def permutation(epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(n)

    return lambda i, within: int(permutation(i // n)[within])


def library_iterator(dataset: grain.MapDataset):
    """A checkpointable iterator (`get_state()` / `set_state(state)`, JSON-able dicts) over `dataset`."""
    return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                                          prefetch_buffer_size=PREFETCH_BATCHES)))


def build_library_simulator(config: Config) -> LibrarySimulator:
    """Read the manifest and the held-out tail of the library `config.data.path`; ConfigError naming data.path."""
    from ..simulators.montecarlo.library import MonteCarloLibrarySource, library_acquisition, read_manifest

    path = config.data.path
    description = describe_library(path)
    model, prior = library_model_and_prior(description)
    try:
        acquisition = library_acquisition(read_manifest(path))
    except (KeyError, ValueError) as e:
        raise ConfigError("data.path", f"library acquisition: {e}") from None
    if not np.any(acquisition.b0_mask):
        raise ConfigError("data.path", "the library's acquisition has no b=0 measurement; signals are normalised "
                          "by the mean b0")
    n = description["n_samples"]
    n_val = max(1, int(round(config.data.validation_fraction * n)))
    if n - n_val < config.training.batch_size:
        raise ConfigError("data.path", f"the library has {n} samples: {n - n_val} for training after holding out "
                          f"{n_val} for validation, fewer than training.batch_size = {config.training.batch_size}")
    source = MonteCarloLibrarySource(path)
    held = [source[i] for i in range(n - n_val, n)]
    signal = np.stack([h["signal"] for h in held])
    if signal.shape[1] != acquisition.n_measurements:
        raise ConfigError("data.path", f"library signals have {signal.shape[1]} measurements, its acquisition "
                          f"{acquisition.n_measurements}")
    names = description["parameter_names"]
    return LibrarySimulator(
        model=model, prior=prior, protocol=FixedProtocol(acquisition), noise=config.noise,
        description={**description, "fixed": model.fixed, "n_train": n - n_val, "n_validation": n_val},
        columns=tuple(names.index(p) for p in model.parameter_names),
        held_signal=jnp.asarray(signal, jnp.float32),
        held_params=jnp.asarray(np.stack([h["params"] for h in held]), jnp.float32),
    )


def check_same_library(stored: dict, current: dict) -> None:
    """Refuse to resume a run on a library whose manifest changed (its path may move)."""
    if stored.get("manifest_sha256") != current["manifest_sha256"]:
        raise ConfigError("data.path", f"the library at {current['path']} is not the one this run started on "
                          f"({stored.get('path')}: its manifest differs); use a new --workdir")
