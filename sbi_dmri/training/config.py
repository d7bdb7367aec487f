"""Training-run configuration: typed, frozen dataclasses loaded from YAML and validated.

A run is one YAML file (ARCHITECTURE.md, decision 7). `load_config(path, overrides)` reads it, applies
dotted command-line overrides (`training.steps=2000`, `noise.snr=[10,50]`), and validates every key and
value against the dataclasses below. Anything wrong is a `ConfigError` whose message is one line
naming the key, e.g.

    config error: training.stepz: unknown key (did you mean training.steps?)

Units: b-values in ms/µm², δ and Δ in ms, SNR = S0/σ (dimensionless).
A "range" is `[lo, hi]` (inclusive); a single number means `[x, x]`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

Range = tuple[float, float]
IntRange = tuple[int, int]


class ConfigError(ValueError):
    """A bad training config; `str(error)` is one line, `config error: <key>: <problem>`."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"config error: {key}: {problem}" if key else f"config error: {problem}")


# ---------------------------------------------------------------------------- the schema
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which registered model to train for (`sbi_dmri.models.get(name, **fixed)`)."""

    name: str = "ball_stick"
    #: parameters held constant (e.g. {d_iso: 3.0}); they leave the posterior.
    fixed: dict[str, float] = dataclasses.field(default_factory=dict)
    #: prior bound overrides, name → [lower, upper] in the parameter's unit.
    bounds: dict[str, Range] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """A family of PGSE protocols sampled per voxel, or one fixed protocol from FSL files.

    family: `n_b0` b=0 measurements, then one shell per entry of `shells` (a b range in ms/µm², one b
    drawn per shell and voxel), each with a number of random directions drawn from `directions`;
    δ and Δ (ms) drawn per voxel from their ranges with δ < Δ. `n_shells` [lo, hi] (optional) makes the
    number of shells vary: each protocol uses a random subset of that many of the `shells` ranges (so one
    network serves, e.g., 2- and 3-shell protocols); omitted, every protocol has all of them.
    fixed: a shipped protocol by `name` (`sbi_dmri.protocols`, e.g. hcp_3shell), or `bval` (s/mm²) and
    `bvec` files with single numbers for `delta` and `Delta` (ms).
    """

    kind: Literal["family", "fixed"] = "family"
    shells: tuple[Range, ...] = ((0.9, 1.1), (1.9, 2.1), (2.9, 3.1))
    directions: IntRange = (20, 40)
    n_b0: IntRange = (1, 4)
    n_shells: IntRange | None = None
    delta: Range = (10.0, 20.0)
    Delta: Range = (25.0, 45.0)
    name: str | None = None
    bval: str | None = None
    bvec: str | None = None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the training voxels come from.

    analytic: `model` + `protocol` + prior, simulated inside the jitted step (nothing on disk).
    library: a Monte Carlo signal library directory at `path` (`sbi-dmri simulate-library`): the
    posterior is over the library's substrate parameters (prior: uniform in the ranges its manifest
    records), the protocol is the library's own fixed acquisition, and noise (`noise`) is added inside
    the jitted step. The `model` and `protocol` sections must then be left out. Samples are streamed
    through Grain (shuffled with `training.seed`, reshuffled every epoch; the iterator state is saved in
    the checkpoints). The last `validation_fraction` of the library is held out for validation and the
    calibration diagnostics. See docs/mc_library_training.md.
    """

    kind: Literal["analytic", "library"] = "analytic"
    #: library directory (with manifest.json); relative paths are resolved against the config file's folder.
    path: str | None = None
    validation_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    kind: Literal["rician", "gaussian", "none"] = "rician"
    #: SNR = S0/σ range, one value drawn per voxel.
    snr: Range = (10.0, 80.0)
    #: "log": SNR log-uniform in the range; "linear": uniform.
    snr_scale: Literal["log", "linear"] = "log"


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    encoder: Literal["separable", "set", "mlp"] = "set"
    hidden: int = 128
    depth: int = 3
    flow: Literal["spline", "affine"] = "spline"
    flow_layers: int = 4
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    #: K, signal functions of the separable encoder (1, s and K − 2 learnt ones).
    n_basis: int = 8
    #: width of the flow's conditioners (default: `hidden`); they run once per posterior draw.
    flow_hidden: int | None = None
    #: condition the posterior on the voxel's SNR (an input; estimated from the b0s or given at inference).
    snr_input: bool = False
    #: separable encoder: signal-weighted b-tensor moments rotated into the voxel's DTI frame (0: none).
    frame_moments: int = 0


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adam", "adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    schedule: Literal["cosine", "constant"] = "cosine"
    #: final learning rate of the cosine schedule, as a fraction of `lr`.
    final_lr_fraction: float = 0.01
    #: global-norm gradient clipping (0 disables).
    grad_clip: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    steps: int = 20000
    batch_size: int = 512
    seed: int = 0
    #: prior draws used once to estimate the θ normaliser statistics.
    stats_samples: int = 20000
    #: steps between progress/tracker logs.
    log_every: int = 100
    #: protocols drawn per batch from a protocol family, each shared by batch_size / this many voxels
    #: (as in a volume, where every voxel has the same protocol; the set encoders then compute the
    #: protocol half once per protocol). 0: one protocol per voxel.
    protocols_per_batch: int = 0


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    #: steps between validation passes (0: only at the end).
    every: int = 1000
    #: validation simulations (fixed seed, the same at every pass).
    n_sims: int = 2048
    #: run the calibration diagnostics (coverage, SBC, TARP) at the final evaluation.
    diagnostics: bool = True
    #: posterior draws per validation simulation for the diagnostics.
    n_draws: int = 200


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    #: steps between "latest" checkpoints (0: only at the end).
    every: int = 1000
    #: how many "latest" checkpoints to keep (the best one is kept separately).
    keep: int = 2


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    backend: Literal["none", "wandb"] = "none"
    project: str = "sbi-dmri"
    #: W&B mode; "offline" writes runs under the workdir for `wandb sync` later.
    mode: Literal["offline", "online", "disabled"] = "offline"


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    protocol: ProtocolConfig = dataclasses.field(default_factory=ProtocolConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)


# ---------------------------------------------------------------------------- loading
def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults when `path` is None), apply `a.b=value`
    overrides (values parsed as YAML), validate, and return a frozen `Config`.

    Relative FSL paths in `protocol.bval`/`protocol.bvec` and a relative `data.path` are resolved against
    the config file's folder (unless they exist relative to the working directory).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh) or {}
        except OSError as e:
            raise ConfigError("", f"cannot read {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError("", f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError("", f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    _check_library_sections(raw)
    config = from_dict(raw)
    if path is not None:
        config = _resolve_paths(config, os.path.dirname(os.path.abspath(path)))
    return config


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Validate a nested dict (e.g. the resolved config stored in a checkpoint) into a `Config`."""
    config = _build(Config, raw, "")
    validate(config)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def replace(config: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy with some fields changed, e.g. `replace(c, training={"steps": 10})`, re-validated."""
    d = to_dict(config)
    for name, changes in sections.items():
        if name not in d:
            raise ConfigError(name, "unknown section")
        d[name].update(changes)
    return from_dict(d)


def _apply_override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(item, "an override must look like section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def _check_library_sections(raw: Mapping) -> None:
    """A library run takes its parameters and protocol from the library: `model`/`protocol` given are errors.

    Checked on the user's YAML and overrides only (a stored resolved config holds every section)."""
    data = raw.get("data")
    if isinstance(data, Mapping) and data.get("kind") == "library":
        for section, what in (("model", "parameters and prior"), ("protocol", "acquisition")):
            if section in raw:
                raise ConfigError(section, f"not used with data.kind: library (the library's manifest gives the "
                                  f"{what}); remove this section")


def _resolve_paths(config: Config, base: str) -> Config:
    p = config.protocol
    fixed = {}
    for name in ("bval", "bvec"):
        v = getattr(p, name)
        if v is not None and not os.path.isabs(v) and not os.path.exists(v):
            fixed[name] = os.path.join(base, v)
    if fixed:
        config = dataclasses.replace(config, protocol=dataclasses.replace(p, **fixed))
    d = config.data
    if d.path is not None and not os.path.isabs(d.path) and not os.path.exists(d.path):
        config = dataclasses.replace(config, data=dataclasses.replace(d, path=os.path.join(base, d.path)))
    return config


# ---------------------------------------------------------------------------- typed building
def _build(cls, raw, key: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"expected a mapping of keys, got {_show(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in raw.items():
        full = f"{key}.{name}" if key else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f" (did you mean {key + '.' if key else ''}{close[0]}?)" if close else ""
            raise ConfigError(full, f"unknown key{hint}")
        kwargs[name] = _coerce(hints[name], value, full)
    return cls(**kwargs)


def _coerce(tp, value, key: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if origin is Literal:
        if value not in args:
            choices = "|".join(map(str, args))
            raise ConfigError(key, f"must be one of {choices}, got {_show(value)}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(key, f"expected an integer, got {_show(value)}")
        return int(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_show(value)}")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {_show(value)}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if len(args) == 2 and args[1] is not Ellipsis and args[0] in (int, float) and not isinstance(value, (list, tuple)):
            value = [value, value]  # a single number is the degenerate range [x, x]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, f"expected a list of {len(args)} values, got {_show(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    raise TypeError(f"unsupported config type {tp} at {key}")  # a schema bug, not a user error


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# ---------------------------------------------------------------------------- value checks
def validate(config: Config) -> None:
    """Checks across values (ranges ordered, positive sizes, a model that exists)."""
    from .. import models

    def positive(key, v):
        if not v > 0:
            raise ConfigError(key, f"must be > 0, got {v}")

    def ordered(key, r, low=None):
        if r[0] > r[1]:
            raise ConfigError(key, f"range [{r[0]}, {r[1]}] has lower > upper")
        if low is not None and r[0] < low:
            raise ConfigError(key, f"must be ≥ {low}, got [{r[0]}, {r[1]}]")

    d = config.data
    if d.kind == "library":
        if not d.path:
            raise ConfigError("data.path", "a library run needs the library directory (written by "
                              "`sbi-dmri simulate-library --out DIR`)")
    elif d.path is not None:
        raise ConfigError("data.path", "only used with data.kind: library")
    if not 0.0 < d.validation_fraction < 1.0:
        raise ConfigError("data.validation_fraction", f"must lie in (0, 1), got {d.validation_fraction}")

    m = config.model
    if m.name not in models.available():
        close = difflib.get_close_matches(m.name, models.available(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError("model.name", f"unknown model {m.name!r}{hint}")
    for k, r in m.bounds.items():
        if not r[0] < r[1]:
            raise ConfigError(f"model.bounds.{k}", f"needs lower < upper, got [{r[0]}, {r[1]}]")

    p = config.protocol
    if p.kind == "family":
        if not p.shells:
            raise ConfigError("protocol.shells", "a protocol family needs at least one shell")
        for i, s in enumerate(p.shells):
            ordered(f"protocol.shells[{i}]", s, low=0.0)
            if s[1] > 100.0:
                raise ConfigError(f"protocol.shells[{i}]", f"b up to {s[1]} looks like s/mm²; use ms/µm² (÷1000)")
        ordered("protocol.directions", p.directions, low=1)
        ordered("protocol.n_b0", p.n_b0, low=1)
        if p.n_shells is not None:
            ordered("protocol.n_shells", p.n_shells, low=1)
            if p.n_shells[1] > len(p.shells):
                raise ConfigError("protocol.n_shells", f"at most {p.n_shells[1]} shells but only {len(p.shells)} "
                                  "shell ranges are given")
        if any(a[1] > b[0] for a, b in zip(p.shells, p.shells[1:])):
            raise ConfigError("protocol.shells", "shell ranges must be increasing and not overlap")
        ordered("protocol.delta", p.delta)
        ordered("protocol.Delta", p.Delta)
        positive("protocol.delta", p.delta[0])
        if not p.delta[0] < p.Delta[1]:
            raise ConfigError("protocol.Delta", f"no Δ in [{p.Delta[0]}, {p.Delta[1]}] exceeds δ ≥ {p.delta[0]} ms")
    elif p.name is not None:
        from ..protocols import available_protocols

        if p.name not in available_protocols():
            raise ConfigError("protocol.name", f"unknown protocol {p.name!r}; shipped: {', '.join(available_protocols())}")
    else:
        for name in ("bval", "bvec"):
            if getattr(p, name) is None:
                raise ConfigError(f"protocol.{name}", "a fixed protocol needs a shipped name or bval and bvec files")
        if p.delta[0] != p.delta[1] or p.Delta[0] != p.Delta[1]:
            raise ConfigError("protocol.delta", "a fixed protocol takes single δ and Δ values (ms)")
        positive("protocol.delta", p.delta[0])
        if not p.delta[0] <= p.Delta[0]:
            raise ConfigError("protocol.Delta", f"Δ = {p.Delta[0]} ms must be ≥ δ = {p.delta[0]} ms")

    n = config.noise
    ordered("noise.snr", n.snr)
    positive("noise.snr", n.snr[0])

    net = config.network
    if net.encoder == "mlp" and p.kind != "fixed" and d.kind != "library":
        raise ConfigError("network.encoder", "mlp reads a fixed measurement order: it needs protocol.kind: fixed "
                          "(use encoder: set for a protocol family)")
    for k in ("hidden", "depth", "flow_layers"):
        positive(f"network.{k}", getattr(net, k))
    if net.snr_input and n.kind == "none":
        raise ConfigError("network.snr_input", "needs a noise model (noise.kind rician or gaussian)")
    if net.flow_hidden is not None:
        positive("network.flow_hidden", net.flow_hidden)
    if net.frame_moments < 0 or (net.frame_moments and net.encoder != "separable"):
        raise ConfigError("network.frame_moments", f"must be ≥ 0 and needs encoder: separable, got {net.frame_moments}")
    if net.n_basis < 3:
        raise ConfigError("network.n_basis", f"must be ≥ 3 (1, s and a learnt function), got {net.n_basis}")
    for q in net.quantiles:
        if not 0.0 < q < 1.0:
            raise ConfigError("network.quantiles", f"quantiles must lie in (0, 1), got {q}")

    o = config.optimizer
    positive("optimizer.lr", o.lr)
    if o.warmup_steps < 0:
        raise ConfigError("optimizer.warmup_steps", f"must be ≥ 0, got {o.warmup_steps}")
    if not 0.0 <= o.final_lr_fraction <= 1.0:
        raise ConfigError("optimizer.final_lr_fraction", f"must lie in [0, 1], got {o.final_lr_fraction}")
    if o.weight_decay < 0 or o.grad_clip < 0:
        raise ConfigError("optimizer.weight_decay" if o.weight_decay < 0 else "optimizer.grad_clip", "must be ≥ 0")

    t = config.training
    for k in ("steps", "batch_size", "stats_samples", "log_every"):
        positive(f"training.{k}", getattr(t, k))
    if t.protocols_per_batch < 0 or (t.protocols_per_batch and t.batch_size % t.protocols_per_batch):
        raise ConfigError("training.protocols_per_batch",
                          f"must be 0 (one per voxel) or divide training.batch_size = {t.batch_size}, "
                          f"got {t.protocols_per_batch}")
    e = config.evaluation
    if e.every < 0:
        raise ConfigError("evaluation.every", f"must be ≥ 0, got {e.every}")
    positive("evaluation.n_sims", e.n_sims)
    positive("evaluation.n_draws", e.n_draws)
    c = config.checkpoint
    if c.every < 0:
        raise ConfigError("checkpoint.every", f"must be ≥ 0, got {c.every}")
    positive("checkpoint.keep", c.keep)
