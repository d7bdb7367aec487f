"""Training data simulated on the fly, inside the jitted step (ARCHITECTURE.md, decision 6).

    prior → protocol (per voxel, padded + mask) → model.signal (vmap) → noise at SNR ~ range
          → normalise by the mean b0 → network batch {signals, mask, protocol, frame, theta}

Nothing is stored on disk: every step draws fresh parameters, protocols and noise from a key
derived from (seed, step), so a resumed run sees exactly the batches an uninterrupted one would.

Monte Carlo libraries on disk take the other road (`library_data.py`): Grain streams their clean
signals and parameters, and `observe` below (noise, b0 normalisation) runs on them inside the step.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from ..acquisition import B0_THRESHOLD, Acquisition
from ..models.base import Model
from ..noise import add_noise
from ..priors import LogUniform, Prior, Uniform
from .config import Config, NoiseConfig
from .protocols import Protocol, build_protocol


@dataclasses.dataclass(frozen=True)
class Simulation:
    """One simulated batch, with everything a test or a diagnostic may want to look at.

    Attributes (B voxels, M = the protocol's padded size):
        params: constrained parameter draws, (B,) scalars and (B, 3) axes.
        acquisition: per-voxel protocols, fields (B, M).
        mask: (B, M) True for real measurements.
        snr: (B,) S0/σ of each voxel (inf without noise).
        clean: (B, M) noise-free E = S/S0 (model.signal), 0 at padded slots.
        noisy: (B, M) clean plus noise, before normalisation, 0 at padded slots.
        signals: (B, M) noisy / mean of the voxel's noisy b0 measurements, 0 at padded slots.
        groups: G > 0 when the B voxels come in G consecutive groups sharing one protocol; 0 when each
            voxel has its own (static).
    """

    params: dict
    acquisition: Acquisition
    mask: jax.Array
    snr: jax.Array
    clean: jax.Array
    noisy: jax.Array
    signals: jax.Array
    groups: int = 0


jax.tree_util.register_dataclass(
    Simulation, data_fields=["params", "acquisition", "mask", "snr", "clean", "noisy", "signals"],
    meta_fields=["groups"],
)


@dataclasses.dataclass(frozen=True, eq=False)
class Simulator:
    """Draws training voxels for one model, prior, protocol family and noise model (all static)."""

    model: Model
    prior: Prior
    protocol: Protocol
    noise: NoiseConfig

    def simulate(self, key, n: int, groups: int = 0) -> Simulation:
        """`n` voxels (call inside `jit`; `n` and `groups` are static).

        groups: 0 draws a protocol per voxel; G > 0 (dividing n) draws G protocols, each shared by n/G
            consecutive voxels (a volume's situation; the set encoders then do their protocol half G times).
        """
        k_prior, k_protocol, k_snr, k_noise = jax.random.split(key, 4)
        params = self.prior.sample(k_prior, n)
        if groups:
            if n % groups:
                raise ValueError(f"{groups} protocol groups do not divide {n} voxels")
            acq, mask = jax.vmap(self.protocol.sample)(jax.random.split(k_protocol, groups))
            acq, mask = jax.tree_util.tree_map(lambda x: jnp.repeat(x, n // groups, axis=0), (acq, mask))
        else:
            acq, mask = jax.vmap(self.protocol.sample)(jax.random.split(k_protocol, n))
        clean = jax.vmap(training_signal(self.model, self.protocol.b_max))(acq, params)
        return observe(k_snr, k_noise, params, acq, mask, clean, self.noise, groups)


def training_signal(model: Model, b_max: float):
    """`model.signal`, or the equal but cheaper form the NLLS optimiser iterates (`fitting/fast_signal.py`:
    NODDI's Watson convolutions merged, with a smaller quadrature where b_max·d allows; measured ≤ 5e-8 from
    `model.signal`, far below any training noise). The signal is most of a simulated sample's cost.

    Args:
        b_max: the largest b-value the protocol can draw, ms/µm² (it decides the quadrature).
    """
    from ..fitting.fast_signal import fitting_signal

    probe = Acquisition.pgse(np.array([b_max]), np.array([[0.0, 0.0, 1.0]]), delta=10.0, Delta=20.0)
    return fitting_signal(model, probe)[0]


def draw_snr(key, n: int, noise: NoiseConfig) -> jax.Array:
    """(n,) SNR = S0/σ per voxel from the config's range (log-uniform or uniform); inf without noise."""
    if noise.kind == "none":
        return jnp.full((n,), jnp.inf)
    lo, hi = noise.snr
    u = jax.random.uniform(key, (n,))
    if noise.snr_scale == "log":
        return jnp.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    return lo + (hi - lo) * u


def observe(k_snr, k_noise, params, acq: Acquisition, mask, clean, noise: NoiseConfig, groups: int = 0) -> Simulation:
    """Noise at a drawn SNR and normalisation by the mean noisy b0: clean E (B, M) → a `Simulation`.

    Shared by the analytic simulator and Monte Carlo libraries (call inside `jit`).
    """
    n = clean.shape[0]
    clean = jnp.where(mask, clean, 0.0).astype(jnp.float32)
    snr = draw_snr(k_snr, n, noise)
    if noise.kind == "none":
        noisy = clean
    else:
        noisy = jnp.where(mask, add_noise(k_noise, clean, snr[:, None], kind=noise.kind), 0.0)
    b0 = mask & (jnp.asarray(acq.bvalues) <= B0_THRESHOLD)
    s0 = jnp.sum(jnp.where(b0, noisy, 0.0), axis=1) / jnp.maximum(jnp.sum(b0, axis=1), 1)
    # Gaussian noise at low SNR can make the b0 mean ≤ 0; keep the ratio finite (such voxels are
    # rare and stay in the training set as what a scanner would deliver after clipping).
    s0 = jnp.where(s0 > 1e-3, s0, 1e-3)
    signals = jnp.where(mask, noisy / s0[:, None], 0.0)
    return Simulation(params, acq, mask, snr, clean, noisy, signals, groups)


def network_batch(sim: Simulation, space) -> dict:
    """The batch of the networks contract: signals, mask, protocol features, DTI frame, θ, SNR.

    Args:
        sim: a `Simulation`.
        space: a `sbi_dmri.networks.ParameterSpace` for the simulator's model and prior.
    """
    from ..networks.features import protocol_features
    from ..networks.parameter_space import dti_frame

    acq = sim.acquisition
    if sim.groups:  # one feature table per group (the first voxel of each): (G, M, F)
        per_group = jax.tree_util.tree_map(lambda x: x[:: x.shape[0] // sim.groups], acq)
        features = jax.vmap(protocol_features)(per_group)
    else:
        features = jax.vmap(protocol_features)(acq)
    frame = dti_frame(sim.signals, sim.mask, jnp.asarray(acq.bvalues), jnp.asarray(acq.directions))
    theta = space.to_theta(sim.params, frame)
    return {"signals": sim.signals, "mask": sim.mask, "protocol": features, "frame": frame, "theta": theta,
            "snr": sim.snr}


def model_and_prior_for_checkpoint(config: Config, meta: dict) -> tuple[Model, Prior]:
    """The model and prior of a stored run, from its resolved config and meta (no library read from disk)."""
    if config.data.kind == "library":
        from .library_data import library_model_and_prior

        return library_model_and_prior(meta["library"])
    return build_model_and_prior(config)


def build_model_and_prior(config: Config) -> tuple[Model, Prior]:
    """The registered model with its fixed parameters, and its default prior with bound overrides."""
    from .. import models
    from .config import ConfigError

    try:
        model = models.get(config.model.name, **config.model.fixed)
    except (TypeError, ValueError, KeyError) as e:
        raise ConfigError("model.fixed", str(e).splitlines()[0]) from None
    prior = model.prior
    if config.model.bounds:
        factors = []
        left = dict(config.model.bounds)
        for f in prior.factors:
            name = f.names[0]
            if isinstance(f, (Uniform, LogUniform)) and name in left:
                lo, hi = left.pop(name)
                try:
                    f = type(f)(name, lo, hi)
                except ValueError as e:
                    raise ConfigError(f"model.bounds.{name}", str(e)) from None
            factors.append(f)
        if left:
            key = next(iter(left))
            raise ConfigError(
                f"model.bounds.{key}",
                f"not a bounded scalar parameter of {model.name} (those are: "
                f"{', '.join(f.names[0] for f in prior.factors if isinstance(f, (Uniform, LogUniform)))})",
            )
        prior = Prior(factors)
    return model, prior


def build_simulator(config: Config):
    """The training data of a config: a `Simulator` (analytic) or a `LibrarySimulator` (Monte Carlo library)."""
    if config.data.kind == "library":
        from .library_data import build_library_simulator

        return build_library_simulator(config)
    model, prior = build_model_and_prior(config)
    return Simulator(model=model, prior=prior, protocol=build_protocol(config.protocol), noise=config.noise)
