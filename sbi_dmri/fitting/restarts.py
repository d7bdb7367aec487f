"""Restarts for the voxels whose least-squares fit stands out from the batch's (wrong basins).

Used by `nlls.fit_nlls` after its first Levenberg–Marquardt stage: the runner `run`, the state
`st` (host arrays z, loss, converged, num_steps, centres per fitted voxel) and the compiled restart
function come from there.
"""

from __future__ import annotations

import numpy as np

#: A voxel whose least-squares loss (× S0², see `_stands_out`) exceeds RESTART_LOSS_FACTOR × the
#: lower-quartile loss of the fit (and
#: n_meas × RESTART_RMS_FLOOR², the precision a converged fit reaches) is refitted from
#: `n_restarts` further brute-force candidates. At a common noise level the loss of a good fit is
#: σ²χ²(n_meas − n_free), within ±30 % of its median for n_meas ≳ 50, so a loss 2× the quartile
#: is a fit in a wrong basin (or a voxel unlike the rest), not noise.
RESTART_LOSS_FACTOR = 2.0
RESTART_RMS_FLOOR = {"float64": 1e-10, "float32": 1e-5}
#: Restarts run in rounds of this many candidates (a voxel leaves as soon as its loss is low enough).
RESTART_ROUND = 8
#: Relative loss decrease in a restart round for the voxel to get another round.
RESTART_GAIN = 1e-3
#: … or if its loss still stands out by this multiple of the bar.
RESTART_PERSIST = 100.0
#: The restarts draw from a candidate set this many times larger than the first stage's (scored
#: only for the voxels restarted): SANDI, two diffusion times, noise-free, 40 truths: 38/40
#: recovered from the 128 first-stage candidates, 40/40 from 1024.
RESTART_CANDIDATE_FACTOR = 8
#: Step budget (× max_steps) of the last pass for voxels that still stand out and have not stopped.
POLISH_STEPS_FACTOR = 5


def stands_out(loss: np.ndarray, s0_sq: np.ndarray, dtype, n_meas: int, factor: float = 1.0) -> np.ndarray:
    """Voxels whose least-squares loss stands out (see `fit_nlls`, n_restarts), `factor` × the bar.

    The loss is of the S0-normalised signal. Compared between voxels in the input's units (× S0²),
    where a scan's noise σ is common to all voxels, so a low-S0 voxel's larger normalised loss is not
    taken for a wrong basin (with s0=None, S0 = 1: the normalised noise is taken as common). Bar:
    RESTART_LOSS_FACTOR × the lower quartile of the batch — the quartile, not the median, since the
    noise level must come from the voxels that fitted well and up to 3/4 of a batch may not have
    (for χ² losses the quartile is ≥ 0.9 × the median) — and the working precision's floor."""
    raw = loss * s0_sq
    finite = raw[np.isfinite(raw)]
    typical = float(np.quantile(finite, 0.25)) if len(finite) else 0.0
    floor = n_meas * (RESTART_RMS_FLOOR[np.dtype(dtype).name]) ** 2
    return ~(loss <= factor * floor) & ~(raw <= factor * RESTART_LOSS_FACTOR * typical)


def restart_high_loss(run, st, yn, s0_sq, chunk, n_restarts, size, dtype, n_meas, fn_of_first):
    """Refit, in rounds of `size` candidates of the restart set, the voxels whose least-squares loss
    stands out (`stands_out`, recomputed each round); keep each voxel's best fit. A voxel goes on to
    the next round only if the last one lowered its loss by more than RESTART_GAIN (relative), or if
    its loss still stands out by RESTART_PERSIST × the bar: a voxel whose loss is a little high
    because of its noise finds its minimum again and leaves after one round; one in a landscape with
    several basins, or far above the others (noise-free data), keeps searching."""
    st["restarted"] = np.zeros(len(st["loss"]), bool)
    active = np.ones(len(st["loss"]), bool)
    for first in range(0, n_restarts - size + 1, size):
        rows = np.flatnonzero(active & stands_out(st["loss"], s0_sq, dtype, n_meas))
        if len(rows) == 0:
            return
        st["restarted"][rows] = True
        res = run(fn_of_first(np.int32(first)), [yn[rows]], run.round(max(min(chunk // 8, len(rows)), 1)), None)
        better = res["loss"] < st["loss"][rows]
        new_loss = st["loss"].copy()
        new_loss[rows] = np.minimum(res["loss"], st["loss"][rows])
        persist = stands_out(new_loss, s0_sq, dtype, n_meas, RESTART_PERSIST)[rows]
        active[:] = False
        active[rows] = (res["loss"] < (1.0 - RESTART_GAIN) * st["loss"][rows]) | persist
        upd = rows[better]
        st["z"][upd] = res["z"][better]
        st["loss"][upd] = res["loss"][better]
        st["converged"][upd] = res["converged"][better]
        for k in st["centres"]:
            st["centres"][k][upd] = res["centres"][k][better]
        st["num_steps"][rows] = st["num_steps"][rows] + res["num_steps"]
