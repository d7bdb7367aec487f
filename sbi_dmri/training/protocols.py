"""Acquisition protocols for training: a family sampled per voxel inside `jit`, or one fixed protocol.

A network trained on a *family* serves any protocol drawn from it (ARCHITECTURE.md, decision 5). Shapes
must not depend on the draw, so every voxel's protocol is padded to the family's largest size `M_max`
with a boolean mask:

    slots [0, n_b0_max)                          b = 0 measurements, the first n_b0 real
    slots n_b0_max + s·dirs_max + [0, dirs_max)  shell s: the first n_dirs[s] real

Per voxel: n_b0 ~ U{n_b0}, n_dirs[s] ~ U{directions}, b_s ~ U(shells[s]) (ms/µm²), and with `n_shells`
a random subset of n ~ U{n_shells} shells kept (the others' slots masked), directions uniform
on the sphere, δ ~ U(δ_lo, min(δ_hi, Δ_hi)) and Δ ~ U(max(Δ_lo, δ), Δ_hi) (ms), so δ ≤ Δ always holds. Padded slots
carry the shell's b-value and a valid direction (the model evaluates them; the mask removes them).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ..acquisition import B0_THRESHOLD, Acquisition
from .config import ProtocolConfig

#: Shells of a concrete acquisition are matched to a family's b ranges with this slack, ms/µm².
SHELL_TOLERANCE = 0.1


@dataclasses.dataclass(frozen=True)
class ProtocolFamily:
    """PGSE protocols with `n_b0` b=0 measurements and one shell per b range (see module docstring).

    Attributes (units: b ms/µm², δ/Δ ms):
        shells: ((b_lo, b_hi), ...) one entry per shell.
        directions: (min, max) directions per shell, inclusive.
        n_b0: (min, max) b = 0 measurements, inclusive; min ≥ 1 (signals are normalised by them).
        delta, Delta: (min, max) pulse duration and separation.
        n_shells: (min, max) shells a protocol uses, a random subset of `shells`; None: all of them.
    """

    shells: tuple[tuple[float, float], ...]
    directions: tuple[int, int]
    n_b0: tuple[int, int]
    delta: tuple[float, float]
    Delta: tuple[float, float]
    n_shells: tuple[int, int] | None = None

    @property
    def shell_count_range(self) -> tuple[int, int]:
        return (len(self.shells), len(self.shells)) if self.n_shells is None else tuple(self.n_shells)

    @property
    def n_max(self) -> int:
        """M_max, the padded number of measurements."""
        return self.n_b0[1] + len(self.shells) * self.directions[1]

    @property
    def b_max(self) -> float:
        """The largest b-value any protocol of the family can have, ms/µm²."""
        return float(max(hi for _, hi in self.shells))

    def sample(self, key) -> tuple[Acquisition, jax.Array]:
        """One voxel's protocol: an `Acquisition` with (M_max,) traced fields, and its (M_max,) mask."""
        k_nb0, k_ndir, k_b, k_dir, k_delta, k_Delta, k_keep = jax.random.split(key, 7)
        n_ranges, d_max, b0_max = len(self.shells), self.directions[1], self.n_b0[1]
        n_b0 = jax.random.randint(k_nb0, (), self.n_b0[0], self.n_b0[1] + 1)
        n_dirs = jax.random.randint(k_ndir, (n_ranges,), self.directions[0], self.directions[1] + 1)
        lo = jnp.array([s[0] for s in self.shells], jnp.float32)
        hi = jnp.array([s[1] for s in self.shells], jnp.float32)
        b_shell = jax.random.uniform(k_b, (n_ranges,), minval=lo, maxval=hi)

        lo_n, hi_n = self.shell_count_range
        if (lo_n, hi_n) != (n_ranges, n_ranges):
            # keep a uniformly random subset of n_keep shells: those whose random score ranks below n_keep
            n_keep = jax.random.randint(k_keep, (), lo_n, hi_n + 1)
            rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_keep, (n_ranges,))))
            n_dirs = jnp.where(rank < n_keep, n_dirs, 0)
        slot = jnp.arange(d_max)
        mask = jnp.concatenate([jnp.arange(b0_max) < n_b0, (slot[None, :] < n_dirs[:, None]).reshape(-1)])
        b = jnp.concatenate([jnp.zeros(b0_max), jnp.repeat(b_shell, d_max)])
        g = jax.random.normal(k_dir, (self.n_max, 3))
        g = g / jnp.linalg.norm(g, axis=-1, keepdims=True)

        # δ ≤ Δ by construction: δ from the part of its range below Δ_hi, Δ from the part above δ.
        delta = jax.random.uniform(k_delta, (), minval=self.delta[0], maxval=min(self.delta[1], self.Delta[1]))
        Delta_lo = jnp.maximum(self.Delta[0], delta)
        Delta = Delta_lo + (self.Delta[1] - Delta_lo) * jax.random.uniform(k_Delta, ())
        ones = jnp.ones(self.n_max)
        acq = Acquisition(bvalues=b, directions=g, delta=delta * ones, Delta=Delta * ones, TE=None)
        return acq, mask

    def check(self, acquisition: Acquisition) -> None:
        """Raise ValueError, saying what is off, unless `acquisition` could have come from this family."""
        b = np.asarray(acquisition.bvalues)
        n_b0 = int(np.sum(b <= B0_THRESHOLD))
        problems = []
        if not self.n_b0[0] <= n_b0 <= self.n_b0[1]:
            problems.append(f"{n_b0} b=0 measurements (trained on {self.n_b0[0]}–{self.n_b0[1]})")
        shell_b, index = acquisition.shells(SHELL_TOLERANCE)
        weighted = sorted((float(sb), int(np.sum(index == i))) for i, sb in enumerate(shell_b) if sb > B0_THRESHOLD)
        lo_n, hi_n = self.shell_count_range
        ranges = [list(s) for s in self.shells]
        if not lo_n <= len(weighted) <= hi_n:
            problems.append(
                f"{len(weighted)} shells at b = {[round(s, 3) for s, _ in weighted]} ms/µm² "
                f"(trained on {lo_n if lo_n == hi_n else f'{lo_n}–{hi_n}'} shells in {ranges})"
            )
        else:
            # each shell must fall in its own trained b range, in increasing order
            r = 0
            for sb, count in weighted:
                while r < len(self.shells) and sb > self.shells[r][1] + SHELL_TOLERANCE:
                    r += 1
                if r == len(self.shells) or sb < self.shells[r][0] - SHELL_TOLERANCE:
                    problems.append(f"shell b = {sb:.3g} ms/µm² is not in a trained range of its own {ranges}")
                    break
                r += 1
                if not self.directions[0] <= count <= self.directions[1]:
                    problems.append(f"shell b = {sb:.3g} has {count} directions (trained on {self.directions[0]}–{self.directions[1]})")
        if not acquisition.is_waveform:
            for name, rng in (("delta", self.delta), ("Delta", self.Delta)):
                v = np.asarray(getattr(acquisition, name))
                if np.any(v < rng[0] - 1e-6) or np.any(v > rng[1] + 1e-6):
                    problems.append(f"{name} in [{v.min():g}, {v.max():g}] ms outside the trained range [{rng[0]}, {rng[1]}]")
        else:
            problems.append("free gradient waveforms (trained on PGSE)")
        if problems:
            raise ValueError("acquisition outside the network's training protocol family: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class FixedProtocol:
    """One protocol for every voxel (e.g. from FSL files); mask all True."""

    acquisition: Acquisition

    @property
    def n_max(self) -> int:
        return self.acquisition.n_measurements

    @property
    def b_max(self) -> float:
        """The largest b-value of the protocol, ms/µm²."""
        return float(np.max(self.acquisition.bvalues))

    def sample(self, key) -> tuple[Acquisition, jax.Array]:
        a = self.acquisition
        acq = Acquisition(
            bvalues=jnp.asarray(a.bvalues, jnp.float32), directions=jnp.asarray(a.directions, jnp.float32),
            delta=jnp.asarray(a.delta, jnp.float32), Delta=jnp.asarray(a.Delta, jnp.float32), TE=None,
        )
        return acq, jnp.ones(self.n_max, bool)

    def check(self, acquisition: Acquisition) -> None:
        """Raise ValueError unless `acquisition` is this protocol (b within 0.01 ms/µm², directions up to sign)."""
        a = self.acquisition
        if acquisition.n_measurements != a.n_measurements:
            raise ValueError(
                f"acquisition has {acquisition.n_measurements} measurements; the network was trained on a fixed "
                f"protocol of {a.n_measurements}"
            )
        db = np.max(np.abs(np.asarray(acquisition.bvalues) - np.asarray(a.bvalues)))
        weighted = np.asarray(a.bvalues) > B0_THRESHOLD
        cos = np.abs(np.sum(np.asarray(acquisition.directions) * np.asarray(a.directions), axis=-1))
        if db > 0.01 or (np.any(weighted) and np.min(cos[weighted]) < 0.999):
            raise ValueError(
                "acquisition differs from the fixed protocol the network was trained on "
                f"(max |Δb| = {db:.3g} ms/µm², min |ĝ·ĝ_train| = {np.min(cos[weighted]) if np.any(weighted) else 1:.4f})"
            )


Protocol = ProtocolFamily | FixedProtocol


def build_protocol(config: ProtocolConfig) -> Protocol:
    """The protocol sampler a config describes (reads the FSL files of a fixed protocol)."""
    if config.kind == "family":
        return ProtocolFamily(
            shells=tuple(tuple(s) for s in config.shells), directions=tuple(config.directions),
            n_b0=tuple(config.n_b0), delta=tuple(config.delta), Delta=tuple(config.Delta),
            n_shells=None if config.n_shells is None else tuple(config.n_shells),
        )
    if config.name is not None:
        from ..protocols import load_protocol

        acq = load_protocol(config.name)
    else:
        acq = Acquisition.from_fsl(config.bval, config.bvec, delta=config.delta[0], Delta=config.Delta[0])
    if not np.any(acq.b0_mask):
        raise ValueError("the fixed protocol has no b=0 measurement; signals are normalised by the mean b0")
    return FixedProtocol(acq)


def protocol_to_json(protocol: Protocol) -> dict:
    """A JSON description stored in checkpoints (fixed protocols keep their arrays)."""
    if isinstance(protocol, ProtocolFamily):
        return {"kind": "family", **{k: _lists(v) for k, v in dataclasses.asdict(protocol).items()}}
    a = protocol.acquisition
    return {
        "kind": "fixed", "bvalues": np.asarray(a.bvalues).tolist(), "directions": np.asarray(a.directions).tolist(),
        "delta": np.asarray(a.delta).tolist(), "Delta": np.asarray(a.Delta).tolist(),
    }


def protocol_from_json(d: dict) -> Protocol:
    if d["kind"] == "family":
        return ProtocolFamily(
            shells=tuple(tuple(s) for s in d["shells"]), directions=tuple(d["directions"]), n_b0=tuple(d["n_b0"]),
            delta=tuple(d["delta"]), Delta=tuple(d["Delta"]),
            n_shells=None if d.get("n_shells") is None else tuple(d["n_shells"]),  # absent before n_shells existed
        )
    acq = Acquisition.pgse(d["bvalues"], d["directions"], delta=d["delta"], Delta=d["Delta"])
    return FixedProtocol(acq)


def _lists(x):
    return [_lists(v) for v in x] if isinstance(x, (list, tuple)) else x
