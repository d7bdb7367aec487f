"""TARP: Tests of Accuracy with Random Points (Lemos, Coogan, Hezaveh & Perreault-Levasseur, ICML 2023).

For each test simulation i with truth θ*_i and posterior draws θ_ij (j = 1..L), draw a random
reference point θ_r. The ball around θ_r of radius ‖θ*_i − θ_r‖ is a credible region; its credibility
is the fraction of posterior draws inside it,

    f_i = #{j : ‖θ_ij − θ_r‖ < ‖θ*_i − θ_r‖} / L.

The expected coverage probability of credibility level α is ECP(α) = P(f < α); a posterior is
calibrated iff ECP(α) = α for all α, *for all parameter dimensions jointly* (unlike the marginal
SBC and coverage), provided the references are random (the main theorem of Lemos et al.).

Finite draws. As in `sbc.py` we use the randomised credibility f_i = (k_i + V)/(L + 1), with k_i the
count above and V ~ U(0, 1); it is exactly Uniform(0, 1) under calibration, so ECP(α) = α holds
without a finite-L correction and a KS test of f against U(0, 1) is exact.

Area to curve. ATC = ∫_0^1 (ECP(α) − α) dα = 1/2 − mean(f) (closed form of the integral of the
empirical step function; no binning). ATC > 0: draws lie too far from the references relative to
the truth, typically under-confidence or bias; ATC < 0: over-confidence. Over the whole of [0, 1]
a symmetric failure can cancel: an over-confident 1-d posterior with distant references gives a
∪-shaped f, ECP above the diagonal for α < 1/2 and below it for α > 1/2. The `sbi` package's
`check_tarp` therefore integrates over the upper half only,

    ATC_upper = ∫_{1/2}^{1} (ECP(α) − α) dα = 5/8 − mean(max(f, 1/2)),

which in turn misses bias (on the toy problem a bias of one posterior sd gives ATC_upper ≈ −0.004
but ATC ≈ +0.073). Gate used here: |ATC| ≤ 0.01 AND |ATC_upper| ≤ 0.01 (failing either fails).

Null spread. For a calibrated posterior with independent references (one per simulation),
sd(ATC) = 1/√(12·n_sims) (0.009 for 1000 simulations, 0.0029 for 10000) and sd(ATC_upper) ≈
0.161/√n_sims; prior references pair simulations and add a little (measured over 40 toy test sets:
sd(ATC) 0.0090 at 1000, 0.0037 at 10000). The 0.01 gate is a ≈ 3-sd test only from ≈ 10000 test
simulations; with 1000 a correct posterior failed it in 13 of 40 toy test sets. More references
per simulation shrink the reference noise, not the simulation noise; with n_refs > 1 (or prior
references) the f are not independent and the KS p-value is only approximate. Also returned: the
largest |ECP − α| and the KS p-value of f against U(0, 1).

Normalisation. Distances mix parameters of different units, so each parameter is first mapped to
a common scale: with `bounds=(lower, upper)` (the prior box) to [0, 1]; otherwise standardised by
the mean and sd of the truths (the test set's prior draws).

References (seeded, `n_refs` per simulation). Default `"prior"`: the truth of another, randomly
paired simulation of the same test set, i.e. a draw from the test prior independent of this
simulation's data (a permutation rolled by one, so never the simulation's own truth). `"box"`:
uniform on the prior box when bounds are given, else on the bounding box of the truths, as in
the paper's code. On the toy problem (10000 simulations, 6 data seeds) prior references give a
stable, larger signal: bias of one posterior sd, ATC 0.070–0.077 with prior references but
0.019–0.061 with box references, whose spread follows the most extreme truths that set the box;
over-confidence (variance × 0.5), −0.050 to −0.059 against −0.020 to −0.032. A calibrated
posterior scatters the same way with both (|ATC| ≤ 0.006).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from sbi_dmri.diagnostics.sbc import _as_draws, weighted_randomised_pit


@dataclasses.dataclass(frozen=True)
class TarpResult:
    """alpha (n_grid,), ecp (n_grid,), credibility f (n_sims, n_refs), and summaries."""

    alpha: np.ndarray
    ecp: np.ndarray
    credibility: np.ndarray
    atc: float  # ∫_0^1 (ECP − α) dα
    atc_upper: float  # ∫_{1/2}^{1} (ECP − α) dα
    max_deviation: float  # sup_α |ECP(α) − α| (the KS statistic of f)
    ks_pvalue: float


def _normalise(samples, truths, bounds):
    if bounds is not None:
        lower, upper = (np.asarray(b, np.float64) for b in bounds)
        scale = upper - lower
        if np.any(scale <= 0):
            raise ValueError("bounds must have upper > lower for every parameter")
        return (samples - lower) / scale, (truths - lower) / scale
    mean, sd = truths.mean(axis=0), truths.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (samples - mean) / sd, (truths - mean) / sd


def tarp(
    samples,
    truths,
    *,
    n_refs: int = 1,
    seed: int = 0,
    normalise: bool = True,
    bounds=None,
    references="prior",
    n_grid: int = 201,
    weights=None,
) -> TarpResult:
    """TARP expected-coverage curve and ATC.

    samples (n_sims, n_draws, n_params), truths (n_sims, n_params), any units. n_refs random
    reference points per simulation (their results are pooled). normalise: map parameters to a
    common scale first (to [0, 1] with `bounds=(lower (n_params,), upper (n_params,))`, else
    standardised by the truths). references: "prior" (truths of other simulations, default),
    "box" (uniform; see module docstring), or an array of reference points in the parameters' units,
    (n_sims, n_params) or (n_refs, n_sims, n_params). n_grid: points of the returned α grid (for plots only; the
    summaries are exact). weights (n_sims, n_draws): importance weights of the draws; the credibility is
    then the weighted fraction inside the ball (`sbc.weighted_randomised_pit`).
    """
    samples, truths = _as_draws(samples, truths)
    n_sims, n_draws, n_params = samples.shape
    given = None
    if not isinstance(references, str):
        given = np.broadcast_to(np.asarray(references, np.float64), (n_refs, n_sims, n_params))
    if normalise:
        if given is not None:  # same map as the truths (it depends on the truths only)
            given = _normalise(given, truths, bounds)[0]
        samples, truths = _normalise(samples, truths, bounds)
    rng = np.random.default_rng(seed)
    if given is not None:
        refs = given
    elif references == "prior":
        refs = np.empty((n_refs, n_sims, n_params))
        for r in range(n_refs):
            order = rng.permutation(n_sims)
            refs[r, order] = truths[np.roll(order, -1)]
    elif references == "box":
        if normalise and bounds is not None:  # the prior box, mapped to [0, 1]^d
            lo, hi = np.zeros(n_params), np.ones(n_params)
        else:
            lo, hi = truths.min(axis=0), truths.max(axis=0)
        refs = rng.uniform(lo, hi, size=(n_refs, n_sims, n_params))
    else:
        raise ValueError(f"references must be 'prior' or 'box', got {references!r}")

    f = np.empty((n_sims, n_refs))
    for r in range(n_refs):  # loop keeps memory at one (n_sims, n_draws) distance array
        d_truth = np.linalg.norm(truths - refs[r], axis=-1)  # (n_sims,)
        d_draws = np.linalg.norm(samples - refs[r][:, None, :], axis=-1)  # (n_sims, n_draws)
        if weights is None:
            k = np.sum(d_draws < d_truth[:, None], axis=1)
            f[:, r] = (k + rng.uniform(size=n_sims)) / (n_draws + 1)
        else:
            f[:, r] = weighted_randomised_pit(d_draws < d_truth[:, None], weights, seed=seed + 1 + r)

    flat = np.sort(f.ravel())
    alpha = np.linspace(0.0, 1.0, n_grid)
    ecp = np.searchsorted(flat, alpha, side="left") / flat.size  # P̂(f < α)
    ks = stats.kstest(flat, "uniform")
    return TarpResult(
        alpha=alpha,
        ecp=ecp,
        credibility=f,
        atc=float(0.5 - np.mean(flat)),
        atc_upper=float(5.0 / 8.0 - np.mean(np.maximum(flat, 0.5))),
        max_deviation=float(ks.statistic),
        ks_pvalue=float(ks.pvalue),
    )


def tarp_gate(result: TarpResult, *, max_atc: float = 0.01) -> bool:
    """Pass iff |ATC| ≤ max_atc and |ATC_upper| ≤ max_atc (EVALUATION.md; see module docstring)."""
    return bool(abs(result.atc) <= max_atc and abs(result.atc_upper) <= max_atc)
