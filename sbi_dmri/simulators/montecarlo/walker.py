"""The random walk: one jitted chunk of spins, scanned over time, phases accumulated on the fly.

Physics (see PHYSICS.md, "Monte Carlo: what a correct walker does"):
- each step has fixed length s = √(6 D dt) in a uniformly random direction (cos θ and φ uniform);
- walls reflect elastically (specularly), iterated inside the step until its length is spent (a
  bounded `lax.while_loop`, never rejection sampling); a permeable wall is crossed with probability
  P = (2/3) κ s / D (Fieremans & Lee, NeuroImage 182:39, 2018, the 3-D constant). Only the few spins
  whose straight step passes near a wall (a cheap screen over all spins) are gathered into that loop;
  the others move straight, exactly as the loop would move them;
- the phase is φ = γ Σ_k G_k · x̄_k dt with x̄_k the mean of the step's end points (the step
  midpoint), x relative to each walker's start (float32), G_k in the substrate's local frame.

Phases are never stored per time step: the rendered waveforms (n_meas, n_t, 3) are factorised in
NumPy as G[m, k, c] = Σ_r C[m, c, r] P[k, r] (an exact low-rank SVD; rank 1 for a PGSE protocol with
one timing), and each walker accumulates A[c, r] = Σ_k P[k, r] x̄_k[c]; φ = γ dt Σ A C at the end. Cost
per step is 3·rank per walker, however many measurements.

Layout is structure-of-arrays (3, n): the spin axis last, so XLA vectorises over spins.
Random numbers are counter-based: Threefry-2x32 of (global spin index, step index) under a key, so spin
i's walk depends only on (key, i): any chunking gives bit-identical walks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.random import threefry2x32_p

#: Spins per reduction block (sums are formed per block on the device, then added on the host).
BLOCK = 1024
#: How far (µm) a walker is set off a wall after touching it, so its side is never ambiguous in float32.
WALL_OFFSET = 2e-4
#: Steps ending closer than this (µm) to a wall are resolved as wall hits (float32 safety, ≪ WALL_OFFSET).
WALL_SLACK = 1e-5
#: Segments passing this close (µm) to a wall go through the exact reflection loop (a safe screen).
HIT_MARGIN = 1e-3
#: The reflection loop takes the flagged spins in batches of 1/RESOLVE_SHARE of a chunk (usually one
#: batch: at s/R = 0.1, ≈ 5 % are flagged per step in a cylinder, 7.5 % in a sphere). A lax.switch over
#: several batch sizes was no faster and doubled the compile time.
RESOLVE_SHARE = 12


def _uniform(keypair, counter_a, counter_b):
    """Two independent U(0, 1) arrays (float32, never 0 or 1) from one Threefry-2x32 hash."""
    a, b = threefry2x32_p.bind(keypair[0], keypair[1], counter_a, counter_b)
    scale = 1.0 / 16777216.0
    to01 = lambda w: (jax.lax.shift_right_logical(w, jnp.uint32(8)).astype(jnp.float32) + 0.5) * scale  # noqa: E731
    return to01(a), to01(b)


def _sincos_quarter(x):
    """(cos x, sin x) for |x| ≤ π/4 by Taylor polynomials (truncation < 3e-8 there, below float32's ulp).

    XLA's CPU sin/cos carry a general range reduction that costs more than the whole Threefry hash;
    on a quarter turn none is needed.
    """
    x2 = x * x
    s = x * (1.0 + x2 * (-1.0 / 6 + x2 * (1.0 / 120 + x2 * (-1.0 / 5040 + x2 * (1.0 / 362880)))))
    c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24 + x2 * (-1.0 / 720 + x2 * (1.0 / 40320 + x2 * (-1.0 / 3628800)))))
    return c, s


def _direction(keypair, spin, counter):
    """Uniformly random unit vectors (3, n) from one Threefry-2x32 hash per spin.

    Word a gives cos θ uniform on (−1, 1) (24 bits). Word b gives the azimuth φ = q·π/2 + x, uniform on
    the circle: its top 2 bits the quadrant q, the next 22 bits x uniform on (−π/4, π/4), so cos φ and
    sin φ are a short polynomial plus a quarter-turn rotation (swap and signs), no range reduction.
    """
    a, b = threefry2x32_p.bind(keypair[0], keypair[1], spin, counter)
    cos_t = (jax.lax.shift_right_logical(a, jnp.uint32(8)).astype(jnp.float32) + 0.5) * (2.0 / 16777216.0) - 1.0
    sin_t = jnp.sqrt(jnp.maximum(1.0 - cos_t * cos_t, 0.0))
    q = jax.lax.shift_right_logical(b, jnp.uint32(30))
    frac = (jax.lax.shift_right_logical(b, jnp.uint32(8)) & jnp.uint32(0x3FFFFF)).astype(jnp.float32)
    c, s = _sincos_quarter((frac + 0.5) * (0.5 * jnp.pi / 4194304.0) - 0.25 * jnp.pi)
    odd = (q & jnp.uint32(1)) == 1  # rotate (c, s) by q quarter turns
    cos_p = jnp.where(odd, -s, c)
    sin_p = jnp.where(odd, c, s)
    flip = q >= 2
    cos_p = jnp.where(flip, -cos_p, cos_p)
    sin_p = jnp.where(flip, -sin_p, sin_p)
    return jnp.stack([sin_t * cos_p, sin_t * sin_p, cos_t])


def _dot3(a, b):
    """Row-wise dot product of (3, n) arrays (written out: XLA CPU reduces over a leading axis of 3 slowly)."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _wrap(geom, pos):
    """Map positions (3, n) into the periodic cell on periodic axes."""
    rows = []
    for c in range(3):
        if geom.periodic[c]:
            L = geom.cell[c]
            rows.append(pos[c] - L * jnp.floor(pos[c] / L))
        else:
            rows.append(pos[c])
    return jnp.stack(rows)


def _candidates(geom, pos):
    """Obstacle centres (3, K, n or 1) and radii (K, n or 1) reachable from `pos` (3, n) in one step."""
    if geom.table.shape[0] == 1:  # one fixed candidate list: broadcast, no gather
        idx = geom.table[0]
        return geom.centres.T[:, idx][:, :, None], geom.radii[idx][:, None]
    gs = geom.grid_shape
    ijk = [jnp.clip(jnp.floor(pos[c] / geom.grid_h[c]).astype(jnp.int32), 0, gs[c] - 1) for c in range(3)]
    flat = (ijk[0] * gs[1] + ijk[1]) * gs[2] + ijk[2]
    idx = geom.table[flat].T  # (K, n)
    return geom.centres.T[:, idx], geom.radii[idx]


def _first_hit_round(geom, pos, u, centres, radii):
    """Distance along u (3, n) to the first wall (inf if none) and the unit wall normal (3, n) there.

    The K candidates are scanned with elementwise selects (no argmin/gather, which are slow on CPU).
    """
    axes = 2 if geom.kind == "circles" else 3  # circles: cylinders along local z
    a = sum(u[c] * u[c] for c in range(axes))
    a_safe = jnp.maximum(a, 1e-20)
    moving = a > 1e-12
    t_min = jnp.full(pos.shape[1:], jnp.inf, pos.dtype)
    c_min = [jnp.zeros_like(t_min) for _ in range(axes)]
    for k in range(radii.shape[0]):
        d = [pos[c] - centres[c, k] for c in range(axes)]
        b = 2.0 * sum(d[c] * u[c] for c in range(axes))
        cc = sum(dc * dc for dc in d) - radii[k] * radii[k]
        disc = b * b - 4.0 * a * cc
        sq = jnp.sqrt(jnp.maximum(disc, 0.0))
        # Exit root from inside, written without cancellation for either sign of b.
        den = jnp.where(b + sq > 0, b + sq, 1.0)
        t_exit = jnp.where(b > 0, -2.0 * cc / den, (-b + sq) / (2.0 * a_safe))
        t_entry = (-b - sq) / (2.0 * a_safe)
        t = jnp.where(cc < 0.0, t_exit, jnp.where((disc > 0) & (t_entry > 0) & (b < 0), t_entry, jnp.inf))
        better = moving & (t < t_min)
        t_min = jnp.where(better, t, t_min)
        c_min = [jnp.where(better, centres[c, k], c_min[c]) for c in range(axes)]
    t_go = jnp.where(jnp.isfinite(t_min), t_min, 0.0)
    v = [pos[c] + t_go * u[c] - c_min[c] for c in range(axes)]
    if axes == 2:
        v.append(jnp.zeros_like(v[0]))
    v = jnp.stack(v)
    normal = v / jnp.maximum(jnp.sqrt(_dot3(v, v)), 1e-20)[None, :]
    return t_min, normal


def _first_hit_slab(geom, pos, u):
    L = geom.slab_spacing
    z = pos[2] - L * jnp.floor(pos[2] / L)
    uz = u[2]
    safe = jnp.where(uz == 0, 1.0, uz)
    t = jnp.where(uz > 0, (L - z) / safe, jnp.where(uz < 0, -z / safe, jnp.inf))
    normal = jnp.stack([jnp.zeros_like(z), jnp.zeros_like(z), jnp.ones_like(z)])
    return t, normal


def _may_hit(geom, pos, end):
    """True where the straight segment pos → end (3, n) comes within `HIT_MARGIN` of any wall.

    A cheap conservative screen (no square roots): a segment can touch a circle or sphere boundary only
    if its farthest point from the centre (an end point) lies beyond R − m and its nearest point within
    R + m. Spins it clears move straight, exactly as the reflection loop would move them.
    """
    m = HIT_MARGIN
    if geom.kind == "slabs":
        L = geom.slab_spacing
        z0 = pos[2] - L * jnp.floor(pos[2] / L)
        z1 = z0 + (end[2] - pos[2])
        return (jnp.minimum(z0, z1) < m) | (jnp.maximum(z0, z1) > L - m)
    centres, radii = _candidates(geom, pos)
    axes = 2 if geom.kind == "circles" else 3
    seg = [end[c] - pos[c] for c in range(axes)]
    a = sum(sc * sc for sc in seg)
    may = jnp.zeros(pos.shape[1:], bool)
    for k in range(radii.shape[0]):
        d0 = [pos[c] - centres[c, k] for c in range(axes)]
        d1 = [end[c] - centres[c, k] for c in range(axes)]
        r0, r1 = sum(x * x for x in d0), sum(x * x for x in d1)
        b0, b1 = sum(x * y for x, y in zip(d0, seg)), sum(x * y for x, y in zip(d1, seg))
        # Nearest point: an end point, or the foot of the perpendicular when it lies inside the segment
        # (b0 < 0 < b1; distance² = r0 − b0²/a, compared multiplied through by a ≥ 0: no division).
        R_in, R_out = (radii[k] - m) ** 2, (radii[k] + m) ** 2
        near = (jnp.minimum(r0, r1) < R_out) | ((b0 < 0) & (b1 > 0) & (r0 * a - b0 * b0 < R_out * a))
        may = may | ((jnp.maximum(r0, r1) > R_in) & near)
    return may


def _reflect(geom, pos, u, step, transit_draw, p_transit, max_reflections):
    """Advance walkers (3, n) by `step` along u, reflecting (or crossing) walls until the step is spent.

    transit_draw(i) gives the (n,) uniforms deciding membrane crossings at wall interaction i.
    """
    if geom.kind != "slabs":
        centres, radii = _candidates(geom, pos)

    def cond(state):
        i, _, _, rem = state
        return (i < max_reflections) & jnp.any(rem > 0)

    def body(state):
        i, p, d, rem = state
        if geom.kind == "slabs":
            t, normal = _first_hit_slab(geom, p, d)
        else:
            t, normal = _first_hit_round(geom, p, d, centres, radii)
        # A step that would end within WALL_SLACK of a wall counts as a hit (then set off the wall):
        # otherwise float32 rounding could leave the end point on, or just across, the wall.
        hit = t < rem + WALL_SLACK
        travel = jnp.where(hit, t, rem)
        p = p + travel[None, :] * d
        rem = jnp.where(hit, jnp.maximum(rem - travel, 0.0), 0.0)
        reflect = hit & (transit_draw(i) >= p_transit) if geom.permeable else hit
        dn = _dot3(d, normal)[None, :]
        d = jnp.where(reflect[None, :], d - 2.0 * dn * normal, d)
        side = jnp.sign(_dot3(d, normal))[None, :]
        p = p + jnp.where(hit[None, :], WALL_OFFSET * side * normal, 0.0)
        return i + 1, p, d, rem

    rem0 = jnp.full(pos.shape[1:], step, pos.dtype)
    _, pos, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), pos, u, rem0))
    return pos


def _pack_flags(mask):
    """Bit-pack a (n,) bool mask (n a multiple of 32) for `_flagged_indices`.

    Returns words (n/32,) uint32 (bit i of word w = mask[32 w + i]) and the inclusive running count of
    set bits per word (n/32,) int32: a prefix sum over n/32 entries instead of n.
    """
    n = mask.shape[0]
    shifts = jnp.arange(32, dtype=jnp.uint32)
    words = jnp.sum(mask.reshape(n // 32, 32).astype(jnp.uint32) << shifts[None, :], axis=1, dtype=jnp.uint32)
    return words, jnp.cumsum(jax.lax.population_count(words).astype(jnp.int32))


def _flagged_indices(words, running, first, size, fill):
    """Indices of the flagged entries ranked first … first + size − 1 (in index order), `fill` past the end.

    Each word hands out its set bits lowest first, one per pass (a while_loop over passes, as many as
    the most set bits in one word: ~6 at 5 % flagged), straight into their slots: no sort, no prefix sum
    over all n entries (XLA's CPU cumsum, nonzero and searchsorted each cost more than the reflections).
    """
    n_words = words.shape[0]
    slot0 = running - jax.lax.population_count(words).astype(jnp.int32) - first  # slot of each word's 1st
    word_base = 32 * jnp.arange(n_words, dtype=jnp.int32)

    def next_bits(state):
        k, x, idx = state
        lowest = x & (~x + jnp.uint32(1))
        bit = jax.lax.population_count(lowest - jnp.uint32(1)).astype(jnp.int32)
        slot = slot0 + k
        slot = jnp.where((x != 0) & (slot >= 0), slot, size)  # size: out of range, dropped
        return k + 1, x & (x - jnp.uint32(1)), idx.at[slot].set(word_base + bit, mode="drop")

    state = (jnp.int32(0), words, jnp.full((size,), fill, jnp.int32))
    return jax.lax.while_loop(lambda st: jnp.any(st[1] != 0), next_bits, state)[2]


def _move(geom, pos, u, step, spin, transit_draw, p_transit, max_reflections):
    """Advance walkers (3, n) by `step` along u, walls included.

    Almost every step touches no wall (≈ s/(2R) of the spins do, 5 % at s/R = 0.1), so the walls are
    not worked out for every spin: `_may_hit` screens all of them cheaply, and only the flagged ones are
    gathered, 1/RESOLVE_SHARE of the chunk at a time (a loop over rounds, usually one), taken through
    the reflection loop `_reflect`, then scattered back. Every spin's walk is the same whichever round
    it falls in (its reflections depend on its own state and random numbers only), so chunking still
    does not change a bit. transit_draw(i, spin) gives the membrane-crossing uniforms of those spins.
    """
    end = pos + step * u
    if geom.kind == "free":
        return end
    n = pos.shape[1]
    words, running = _pack_flags(_may_hit(geom, pos, end))
    size = max(32, n // RESOLVE_SHARE)

    def resolve_round(r, new):
        idx = _flagged_indices(words, running, r * size, size, n)
        take = lambda a: jnp.take(a, idx, axis=-1, mode="fill", fill_value=0)  # noqa: E731 (fill: dropped below)
        sub_spin = take(spin)
        moved = _reflect(geom, take(pos), take(u), step, lambda i: transit_draw(i, sub_spin), p_transit,
                         max_reflections)
        return new.at[:, idx].set(moved, mode="drop")

    return jax.lax.fori_loop(0, (running[-1] + size - 1) // size, resolve_round, end)


def _initial_positions(geom, keypair, spin):
    """Uniform positions (3, n) in each compartment's volume (inverse-CDF placements, no rejection)."""
    u1, u2 = _uniform(keypair, spin, jnp.zeros_like(spin))
    u3, u4 = _uniform(keypair, spin, jnp.ones_like(spin))
    zeros = jnp.zeros_like(u1)
    if geom.kind == "free":
        return jnp.stack([zeros, zeros, zeros])
    if geom.kind == "slabs":
        return jnp.stack([zeros, zeros, geom.slab_spacing * u1])
    if any(geom.periodic):  # packed: uniform in the cell; the compartment follows from the position
        return jnp.stack([u * geom.cell[c] if geom.periodic[c] else zeros for c, u in enumerate((u1, u2, u3))])
    R = geom.radii[0]
    if geom.kind == "circles":
        r, th = R * jnp.sqrt(u1), 2.0 * jnp.pi * u2
        return jnp.stack([r * jnp.cos(th), r * jnp.sin(th), zeros])
    r, z, ph = R * jnp.cbrt(u1), 2.0 * u2 - 1.0, 2.0 * jnp.pi * u3
    s = jnp.sqrt(jnp.maximum(1.0 - z * z, 0.0))
    return r[None, :] * jnp.stack([s * jnp.cos(ph), s * jnp.sin(ph), z])


def _labels(geom, pos):
    """Compartment index at t = 0: packed substrates 0 = intra (inside an obstacle), 1 = extra."""
    if not any(geom.periodic) or geom.kind == "slabs":
        return jnp.zeros(pos.shape[1:], jnp.int32)
    centres, radii = _candidates(geom, pos)
    axes = 2 if geom.kind == "circles" else 3
    r2 = sum((pos[c][None, :] - centres[c]) ** 2 for c in range(axes))  # (K, n)
    inside = jnp.any(r2 < radii * radii, axis=0)
    return jnp.where(inside, 0, 1).astype(jnp.int32)


def run_chunk(geom, keypairs, spin, n_spins, basis, coeffs, step, p_transit, gamma_dt, *,
              n_labels, max_reflections, record):
    """Walk the spins with global indices `spin` through all time steps (call under jit).

    Args:
        geom: `Geometry`.
        keypairs: (3, 2) uint32 Threefry keys (directions, membrane crossings, initial placement).
        spin: (n,) uint32 global spin indices (a multiple of BLOCK long); spins ≥ n_spins are padding.
        n_spins: () uint32 number of real spins.
        basis: (n_t, r) time profiles P[k, r] of the factorised waveform.
        coeffs: (n_meas, 3, r) coefficients C[m, c, r] (mT/m, local frame).
        step: step length s (µm). p_transit: crossing probability per wall hit. gamma_dt: γ·dt.
    Returns:
        dict of per-block sums (nb, n_labels, n_meas) "cos", "sin", "cos2", counts (nb, n_labels), and
        with `record` the per-spin "displacement", "start" (n, 3) (local frame, µm) and "label" (n,).
    """
    n = spin.shape[0]
    nb = n // BLOCK
    r = basis.shape[1]
    start = _initial_positions(geom, keypairs[2], spin)
    labels = _labels(geom, start)

    def one_step(carry, xs):
        pos, disp, acc = carry
        k, p_k = xs
        u = _direction(keypairs[0], spin, jnp.broadcast_to(k, spin.shape))

        def transit_draw(i, spins):
            counter = k * jnp.uint32(max_reflections) + i.astype(jnp.uint32)
            return _uniform(keypairs[1], spins, jnp.broadcast_to(counter, spins.shape))[0]

        new = _move(geom, pos, u, step, spin, transit_draw, p_transit, max_reflections)
        dx = new - pos
        acc = acc + (disp + 0.5 * dx)[:, None, :] * p_k[None, :, None]
        return (_wrap(geom, new), disp + dx, acc), None

    n_t = basis.shape[0]
    carry0 = (start, jnp.zeros((3, n)), jnp.zeros((3, r, n)))
    (_, disp, acc), _ = jax.lax.scan(one_step, carry0, (jnp.arange(n_t, dtype=jnp.uint32), basis))
    phase = gamma_dt * jnp.einsum("crn,mcr->mn", acc, coeffs)
    valid = spin < n_spins
    onehot = (labels[None, :] == jnp.arange(n_labels)[:, None]) & valid[None, :]
    w = onehot.astype(phase.dtype).reshape(n_labels, nb, BLOCK)
    m = phase.shape[0]
    cos, sin = jnp.cos(phase).reshape(m, nb, BLOCK), jnp.sin(phase).reshape(m, nb, BLOCK)
    out = {
        "cos": jnp.einsum("ljb,mjb->jlm", w, cos),
        "sin": jnp.einsum("ljb,mjb->jlm", w, sin),
        "cos2": jnp.einsum("ljb,mjb->jlm", w, cos * cos),
        "count": jnp.sum(w, axis=2).T,
    }
    if record:
        out.update(displacement=disp.T, start=start.T, label=labels)
    return out
