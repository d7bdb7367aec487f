"""Shipped acquisition protocols (FSL gradient tables + timing), and a direction-set generator.

| name             | shells (ms/µm²)            | measurements | δ / Δ (ms)  | like                        |
|------------------|----------------------------|--------------|-------------|-----------------------------|
| hcp_3shell       | 0 ×6, 1, 2, 3 (×30 each)   | 96           | 10.6 / 43.1 | the HCP young-adult protocol |
| clinical_2shell  | 0 ×4, 1, 2 (×32 each)      | 68           | 20.0 / 35.0 | a clinical 2-shell scan      |
| sandi_5shell     | 0 ×6, 1, 2.5, 4, 6, 10 (×30)| 156          | 10.0 / 30.0 | a high-b SANDI-style scan    |
| hardi_2shell     | 0 ×5, 1.2, 3 (×64 each)    | 133          | 15.0 / 30.0 | a 2-shell HARDI research scan|

Files are `<name>.bval` (s/mm²) and `<name>.bvec` (3 × N), timing in `protocols.json`; they were
written by `write_protocol_files()` from `electrostatic_directions` and are reproducible bit for bit.
"""

from __future__ import annotations

import json
import os
from importlib import resources

import numpy as np

from ..acquisition import Acquisition, write_bvals_bvecs

_SPECS = {
    "hcp_3shell": dict(n_b0=6, shells=(1.0, 2.0, 3.0), n_dirs=30, delta=10.6, Delta=43.1, TE=89.5),
    "clinical_2shell": dict(n_b0=4, shells=(1.0, 2.0), n_dirs=32, delta=20.0, Delta=35.0, TE=80.0),
    "sandi_5shell": dict(n_b0=6, shells=(1.0, 2.5, 4.0, 6.0, 10.0), n_dirs=30, delta=10.0, Delta=30.0, TE=60.0),
    "hardi_2shell": dict(n_b0=5, shells=(1.2, 3.0), n_dirs=64, delta=15.0, Delta=30.0, TE=95.0),
}


def electrostatic_directions(n: int, seed: int = 0, iterations: int = 2000) -> np.ndarray:
    """n unit axes spread over the sphere by antipodal electrostatic repulsion (Jones et al. 1999).

    Each axis repels both ends of every other axis (energy Σ 1/|dᵢ − dⱼ| + 1/|dᵢ + dⱼ|), minimised by
    projected gradient descent from a seeded random start. Returns (n, 3) with z ≥ 0.
    """
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    step = 0.1
    for _ in range(iterations):
        force = np.zeros_like(d)
        for sgn in (1.0, -1.0):
            diff = d[:, None, :] - sgn * d[None, :, :]
            dist = np.linalg.norm(diff, axis=-1)
            if sgn > 0:
                np.fill_diagonal(dist, np.inf)  # no self-repulsion (the −dᵢ image is radial, projected out)
            force += np.sum(diff / dist[..., None] ** 3, axis=1)
        force -= np.sum(force * d, axis=1, keepdims=True) * d  # tangential part only
        d = d + step * force / n
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        step *= 0.999
    d[d[:, 2] < 0] *= -1
    return d


def available_protocols() -> list[str]:
    return sorted(_SPECS)


def _dir():
    return resources.files(__name__)


def protocol_paths(name: str) -> tuple[str, str]:
    """(bval_path, bvec_path) of a shipped protocol."""
    if name not in _SPECS:
        raise ValueError(f"unknown protocol {name!r}; shipped: {', '.join(available_protocols())}")
    base = _dir()
    return str(base / f"{name}.bval"), str(base / f"{name}.bvec")


def protocol_timing(name: str) -> dict:
    """{"delta": ms, "Delta": ms, "TE": ms} of a shipped protocol."""
    protocol_paths(name)
    return json.loads((_dir() / "protocols.json").read_text())[name]


def load_protocol(name: str) -> Acquisition:
    """The shipped protocol `name` as an Acquisition."""
    bval, bvec = protocol_paths(name)
    t = protocol_timing(name)
    return Acquisition.from_fsl(bval, bvec, delta=t["delta"], Delta=t["Delta"], TE=t["TE"])


def write_protocol_files(folder: str) -> None:
    """Regenerate the shipped files (developers only; the output is committed)."""
    timing = {}
    for name, s in _SPECS.items():
        dirs = electrostatic_directions(s["n_dirs"], seed=0)
        b = [0.0] * s["n_b0"]
        g = [np.array([1.0, 0.0, 0.0])] * s["n_b0"]
        for k, shell in enumerate(s["shells"]):
            # Rotate each shell's set so shells do not share directions.
            rot = _rotation_about_z(k * 0.7)
            b += [shell] * s["n_dirs"]
            g += list(dirs @ rot.T)
        # Spread the b0s through the acquisition as scanners do.
        order = _interleave_b0(np.array(b))
        write_bvals_bvecs(
            os.path.join(folder, f"{name}.bval"), os.path.join(folder, f"{name}.bvec"),
            np.array(b)[order], np.array(g)[order],
        )
        timing[name] = {"delta": s["delta"], "Delta": s["Delta"], "TE": s["TE"]}
    with open(os.path.join(folder, "protocols.json"), "w") as f:
        json.dump(timing, f, indent=2)
        f.write("\n")


def _rotation_about_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _interleave_b0(b: np.ndarray) -> np.ndarray:
    b0 = np.flatnonzero(b == 0)
    dw = np.flatnonzero(b > 0)
    every = max(1, len(dw) // len(b0))
    order, k = [], 0
    for i, j in enumerate(b0):
        order.append(j)
        order.extend(dw[k : k + every] if i < len(b0) - 1 else dw[k:])
        k += every
    return np.array(order)
