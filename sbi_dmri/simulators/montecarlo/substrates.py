"""Substrates for the Monte Carlo walker: geometry, initial placement and the neighbour tables.

Every substrate lives in its own *local frame* (cylinder axes and plane normals along local z); the
walker rotates the gradient into that frame instead of rotating the walls. Lengths in µm,
permeability κ in µm/ms (0 = impermeable).

The walker consumes a `Geometry` (an `eqx.Module` of arrays, built here in NumPy before any
tracing). Obstacles are one of three kinds:

- ``"free"``: no walls.
- ``"circles"``: cylinders parallel to local z (their cross-sections are circles in the local xy plane).
- ``"spheres"``: spheres.
- ``"slabs"``: a periodic stack of parallel planes with normal local z, spacing L.

Packed substrates tile a periodic cell. Their obstacles are stored with their periodic images; a
fixed grid over the cell lists, for each grid cell, every obstacle image that intersects the grid
cell grown by one step length, so the few candidates a walker can reach during one step are found
by one table look-up (the hexagonal lattice uses the same table: a lattice is just a cell with two
circles). Nothing here knows any closed-form signal.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import equinox as eqx
import numpy as np

#: Up to this many obstacle images within reach of the periodic cell, every walker tests all of them
#: (elementwise, vectorised); beyond it the grid table is used (one gather per spin and step). Every
#: walker screens its candidates every step, so the short grid lists win as soon as a cell holds more
#: than a few images: 12 random cylinders, 19 broadcast candidates → 1.3e6 spin-steps/s (13.6 s to
#: compile), grid lists of 5 → 1.3e7 (2.7 s); hexagonal lattice 8 broadcast → 8.6e6, grid 6 → 1.05e7.
_MAX_BROADCAST_CANDIDATES = 4

#: Centre of the padding obstacle in neighbour tables: far away, zero radius, never hit.
_FAR = -1.0e4


class Geometry(eqx.Module):
    """Arrays the walker needs (float32; built by `Substrate.geometry(step_length)`).

    kind, dim (2 for circles, 3 for spheres), periodic (per local axis) and permeable are static.
    """

    kind: str = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    periodic: tuple = eqx.field(static=True)
    permeable: bool = eqx.field(static=True)
    cell: np.ndarray  # (3,) periodic cell lengths (µm); 1 on non-periodic axes (unused there)
    centres: np.ndarray  # (n_img, 3) obstacle centres incl. periodic images (µm); z ignored for circles
    radii: np.ndarray  # (n_img,) µm
    table: np.ndarray  # (n_cells, K) int32 indices into centres
    grid_shape: np.ndarray  # (3,) int32 grid cells per axis
    grid_h: np.ndarray  # (3,) float32 grid cell size (µm)
    slab_spacing: np.ndarray  # () µm, slabs only
    kappa: np.ndarray  # () µm/ms


def rotation_to_z(axis) -> np.ndarray:
    """Rotation matrix R (3, 3) with R @ axis = ẑ: local coordinates x_local = R @ x_lab."""
    a = np.asarray(axis, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(a)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"orientation must be a non-zero 3-vector, got {axis!r}")
    a = a / norm
    # Two orthonormal vectors completing a right-handed frame with a as the third axis.
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    return np.stack([e1, e2, a])


def _geometry(kind, dim, periodic, kappa, cell=(1.0, 1.0, 1.0), centres=None, radii=None, table=None,
              grid_shape=(1, 1, 1), grid_h=(1.0, 1.0, 1.0), slab_spacing=1.0) -> Geometry:
    if centres is None:
        centres = np.full((1, 3), _FAR)
        radii = np.zeros(1)
    if table is None:
        table = np.arange(len(radii))[None, :]
    return Geometry(
        kind=kind, dim=dim, periodic=tuple(bool(p) for p in periodic), permeable=bool(kappa > 0),
        cell=np.asarray(cell, np.float32), centres=np.asarray(centres, np.float32),
        radii=np.asarray(radii, np.float32), table=np.asarray(table, np.int32),
        grid_shape=np.asarray(grid_shape, np.int32), grid_h=np.asarray(grid_h, np.float32),
        slab_spacing=np.asarray(slab_spacing, np.float32), kappa=np.asarray(kappa, np.float32),
    )


def _check_positive(name, value):
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check_kappa(kappa):
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"permeability kappa must be ≥ 0 µm/ms, got {kappa!r}")


# ---------------------------------------------------------------------------------------- substrates
@dataclasses.dataclass(frozen=True)
class Free:
    """Unrestricted diffusion (one compartment)."""

    compartments = ("free",)
    orientation = (0.0, 0.0, 1.0)
    kappa = 0.0

    def min_length(self) -> float:
        return math.inf

    def geometry(self, step_length: float) -> Geometry:
        return _geometry("free", 3, (False, False, False), 0.0)


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """One cylinder of `radius` µm along unit `orientation`; walkers start uniformly inside.

    With κ > 0 walkers may leave into unbounded free space (they stay labelled "intra", their
    compartment at t = 0).
    """

    radius: float
    orientation: tuple = (0.0, 0.0, 1.0)
    kappa: float = 0.0
    compartments = ("intra",)

    def __post_init__(self):
        _check_positive("radius", self.radius)
        _check_kappa(self.kappa)
        rotation_to_z(self.orientation)

    def min_length(self) -> float:
        return float(self.radius)

    def geometry(self, step_length: float) -> Geometry:
        return _geometry("circles", 2, (False, False, False), self.kappa, centres=np.zeros((1, 3)),
                         radii=np.array([self.radius]))


@dataclasses.dataclass(frozen=True)
class Sphere:
    """One sphere of `radius` µm; walkers start uniformly inside."""

    radius: float
    kappa: float = 0.0
    compartments = ("intra",)
    orientation = (0.0, 0.0, 1.0)

    def __post_init__(self):
        _check_positive("radius", self.radius)
        _check_kappa(self.kappa)

    def min_length(self) -> float:
        return float(self.radius)

    def geometry(self, step_length: float) -> Geometry:
        return _geometry("spheres", 3, (False, False, False), self.kappa, centres=np.zeros((1, 3)),
                         radii=np.array([self.radius]))


@dataclasses.dataclass(frozen=True)
class Planes:
    """Periodic stack of parallel planes, `spacing` µm apart, with unit `normal`.

    Walkers start uniformly in one slab. Impermeable (κ = 0) this is the classic restricted slab; with
    κ > 0 walkers cross into the neighbouring slabs (labelled by their slab at t = 0).
    """

    spacing: float
    normal: tuple = (0.0, 0.0, 1.0)
    kappa: float = 0.0
    compartments = ("intra",)

    def __post_init__(self):
        _check_positive("spacing", self.spacing)
        _check_kappa(self.kappa)
        rotation_to_z(self.normal)

    @property
    def orientation(self):
        return self.normal

    def min_length(self) -> float:
        return float(self.spacing) / 2.0

    def geometry(self, step_length: float) -> Geometry:
        return _geometry("slabs", 1, (False, False, True), self.kappa,
                         cell=(1.0, 1.0, self.spacing), slab_spacing=self.spacing)


@dataclasses.dataclass(frozen=True, eq=False)
class _Packed:
    """Obstacles (centres (n, d) in [0, cell), radii (n,)) tiling a periodic cell (lengths (d,))."""

    centres: np.ndarray
    radii: np.ndarray
    cell: tuple
    kappa: float = 0.0
    orientation: tuple = (0.0, 0.0, 1.0)
    compartments = ("intra", "extra")
    _dim = 2

    def __post_init__(self):
        c = np.asarray(self.centres, np.float64)
        r = np.asarray(self.radii, np.float64)
        if c.ndim != 2 or c.shape[1] != self._dim or r.shape != (c.shape[0],):
            raise ValueError(f"centres must be (n, {self._dim}) and radii (n,), got {c.shape}, {r.shape}")
        if np.any(r <= 0):
            raise ValueError("radii must be positive (µm)")
        if len(self.cell) != self._dim or min(self.cell) <= 0:
            raise ValueError(f"cell must hold {self._dim} positive lengths (µm), got {self.cell!r}")
        _check_kappa(self.kappa)
        object.__setattr__(self, "centres", np.mod(c, np.asarray(self.cell)))
        object.__setattr__(self, "radii", r)

    @property
    def volume_fraction(self) -> float:
        """Obstacle (intra) volume fraction of the cell (assumes no overlaps)."""
        if self._dim == 2:
            return float(np.sum(np.pi * self.radii**2) / np.prod(self.cell))
        return float(np.sum(4.0 / 3.0 * np.pi * self.radii**3) / np.prod(self.cell))

    def min_length(self) -> float:
        return float(np.min(self.radii))

    def geometry(self, step_length: float) -> Geometry:
        d = self._dim
        cell = np.asarray(self.cell, np.float64)
        # Periodic images (the 3^d neighbours suffice: a step never exceeds half a cell, checked below).
        if step_length > 0.5 * cell.min():
            raise ValueError(f"step length {step_length:.3g} µm exceeds half the periodic cell {cell.min():.3g} µm")
        shifts = np.array(list(itertools.product((-1, 0, 1), repeat=d)), np.float64) * cell
        img_c = (self.centres[None, :, :] + shifts[:, None, :]).reshape(-1, d)
        img_r = np.tile(self.radii, len(shifts))
        # Grid cells about one mean diameter wide; a cell lists every image within reach of one step.
        n_g = np.maximum(1, np.floor(cell / max(2.0 * np.mean(self.radii), 1e-9))).astype(int)
        h = cell / n_g
        margin = step_length * 1.01 + 1e-3
        rows = []
        for idx in itertools.product(*[range(n) for n in n_g]):
            lo = np.asarray(idx) * h - margin
            hi = lo + h + 2 * margin
            nearest = np.clip(img_c, lo, hi)
            hit = np.linalg.norm(img_c - nearest, axis=1) < img_r
            rows.append(np.flatnonzero(hit))
        union = np.unique(np.concatenate(rows))
        if len(union) <= _MAX_BROADCAST_CANDIDATES:
            # Few obstacles within reach of the cell (e.g. a lattice): test them all, no per-walker gather.
            rows, n_g, h = [union], np.ones(d, int), cell
        k = max(1, max(len(r) for r in rows))
        pad = len(img_r)  # index of the far padding obstacle appended below
        table = np.full((len(rows), k), pad, np.int64)
        for i, r in enumerate(rows):
            table[i, : len(r)] = r
        centres3 = np.zeros((len(img_r) + 1, 3))
        centres3[:-1, :d] = img_c
        centres3[-1] = _FAR
        radii = np.append(img_r, 0.0)
        gshape = np.ones(3, int)
        gshape[:d] = n_g
        gh = np.ones(3)
        gh[:d] = h
        cell3 = np.ones(3)
        cell3[:d] = cell
        periodic = tuple(i < d for i in range(3))
        kind = "circles" if d == 2 else "spheres"
        return _geometry(kind, 3 if d == 3 else 2, periodic, self.kappa, cell=cell3, centres=centres3,
                         radii=radii, table=table, grid_shape=gshape, grid_h=gh)


@dataclasses.dataclass(frozen=True, eq=False)
class PackedCylinders(_Packed):
    """Parallel cylinders (along `orientation`) in a periodic cell; intra and extra compartments.

    Build with `PackedCylinders.hexagonal(...)`, `PackedCylinders.random(...)`, or directly from
    centres (n, 2) µm in the cross-section, radii (n,) µm and cell (Lx, Ly) µm.
    """

    _dim = 2

    @classmethod
    def hexagonal(cls, radius, volume_fraction, *, kappa=0.0, orientation=(0.0, 0.0, 1.0), repeats=(1, 1)):
        """Hexagonal lattice of equal cylinders at the given intra volume fraction (< π/(2√3) ≈ 0.907)."""
        _check_positive("radius", radius)
        if not 0 < volume_fraction < np.pi / (2 * np.sqrt(3)):
            raise ValueError(f"volume_fraction must lie in (0, 0.9069), got {volume_fraction!r}")
        a = radius * np.sqrt(2 * np.pi / (np.sqrt(3) * volume_fraction))  # lattice constant, µm
        base = np.array([[0.25 * a, 0.25 * np.sqrt(3) * a], [0.75 * a, 0.75 * np.sqrt(3) * a]])
        nx, ny = repeats
        cell = (nx * a, ny * np.sqrt(3) * a)
        centres = np.concatenate([base + np.array([i * a, j * np.sqrt(3) * a]) for i in range(nx) for j in range(ny)])
        return cls(centres=centres, radii=np.full(len(centres), float(radius)), cell=cell, kappa=kappa,
                   orientation=tuple(orientation))

    @classmethod
    def random(cls, n, mean_radius, volume_fraction, *, gamma_shape=None, kappa=0.0,
               orientation=(0.0, 0.0, 1.0), seed=0, gap=0.0):
        """`n` non-overlapping cylinders with gamma radii (mean µm, shape k; None = equal radii) at a
        target volume fraction, by random sequential addition (largest first) in a square periodic cell.
        Reaches about 0.55; raises ValueError when it cannot place them."""
        radii = _gamma_radii(n, mean_radius, gamma_shape, seed)
        side = np.sqrt(np.sum(np.pi * radii**2) / volume_fraction)
        centres = _random_sequential_addition(radii, np.array([side, side]), seed, gap)
        return cls(centres=centres, radii=radii, cell=(side, side), kappa=kappa, orientation=tuple(orientation))


@dataclasses.dataclass(frozen=True, eq=False)
class PackedSpheres(_Packed):
    """Spheres in a periodic cubic cell; intra and extra compartments (centres (n, 3), radii (n,))."""

    _dim = 3

    @classmethod
    def random(cls, n, mean_radius, volume_fraction, *, gamma_shape=None, kappa=0.0, seed=0, gap=0.0):
        """`n` non-overlapping spheres with gamma radii at a target volume fraction (RSA, up to ≈ 0.35)."""
        radii = _gamma_radii(n, mean_radius, gamma_shape, seed)
        side = np.cbrt(np.sum(4.0 / 3.0 * np.pi * radii**3) / volume_fraction)
        centres = _random_sequential_addition(radii, np.full(3, side), seed, gap)
        return cls(centres=centres, radii=radii, cell=(side, side, side), kappa=kappa)


def _gamma_radii(n, mean_radius, shape, seed) -> np.ndarray:
    _check_positive("mean_radius", mean_radius)
    if shape is None:
        return np.full(int(n), float(mean_radius))
    rng = np.random.default_rng(seed)
    r = rng.gamma(shape, mean_radius / shape, size=int(n))
    return np.sort(np.maximum(r, 0.05 * mean_radius))[::-1]


def _random_sequential_addition(radii, cell, seed, gap, tries=20000) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    centres = np.zeros((0, len(cell)))
    placed_r = np.zeros(0)
    for r in radii:
        for _ in range(tries):
            c = rng.uniform(0.0, cell)
            d = np.abs(centres - c)
            d = np.minimum(d, cell - d)  # minimum-image distance in the periodic cell
            if np.all(np.linalg.norm(d, axis=1) >= placed_r + r + gap):
                break
        else:
            raise ValueError(
                f"random packing failed after placing {len(placed_r)} of {len(radii)} obstacles: "
                "target volume fraction too high for random sequential addition")
        centres = np.vstack([centres, c])
        placed_r = np.append(placed_r, r)
    return centres
