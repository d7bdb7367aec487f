"""All EVALUATION.md gates in one JSON-serialisable dict, for model cards and CI.

`evaluate_gates` runs every diagnostic whose inputs it is given and returns

    {"label", "n_sims", "n_draws", "names", "pass", "warnings": [...],
     "sbc": {...}, "coverage": {...}, "tarp": {...}, "recovery": {...}, "c2st": {...},
     "pareto_khat": {...}, "width_ratio": {...}}

Each gated section has "pass" (bool) and the numbers behind it; "pass" at the top is the AND of the
gated sections that were evaluated. Pareto k̂ and the width ratio are reported, not gated
(EVALUATION.md). Non-finite numbers become None so that `json.dumps(..., allow_nan=False)` works.

Exact rules (see each module for the reasoning):
- sbc: n_sims ≥ 1000, n_draws ≥ 100, and every KS p-value of the randomised PIT > 0.05 / n_params.
- coverage: for levels 0.5, 0.8, 0.9, 0.95 and every parameter, c ≥ γ − 3 SE and c ≥ γ − 0.02;
  over-coverage passes (flagged "conservative").
- tarp: |∫₀¹(ECP − α)| ≤ 0.01 and |∫_{½}^1(ECP − α)| ≤ 0.01.
- recovery: RMSE ≤ reference (NLLS) RMSE for every parameter (only when a reference is given).
- c2st: ≥ 20 voxels and every voxel's accuracy ≤ 0.60.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sbi_dmri.diagnostics.coverage import DEFAULT_LEVELS, coverage_gate, expected_coverage
from sbi_dmri.diagnostics.recovery import posterior_prior_width_ratio, recovery_table
from sbi_dmri.diagnostics.sbc import ks_uniform_pvalues, sbc_gate, sbc_ks_test, sbc_ranks, weighted_randomised_pit
from sbi_dmri.diagnostics.tarp import tarp, tarp_gate
from sbi_dmri.serialization import to_jsonable as to_json

MIN_SIMS, MIN_DRAWS = 1000, 100
C2ST_MAX, C2ST_MIN_VOXELS = 0.60, 20
KHAT_FLAG = 0.7


def _by_name(names, values):
    return {name: values[..., j] for j, name in enumerate(names)}


def c2st_report(accuracies) -> dict:
    """The C2ST gate of per-voxel classifier accuracies: ≥ C2ST_MIN_VOXELS voxels, every one ≤ C2ST_MAX."""
    acc = np.asarray(accuracies, np.float64)
    return {"accuracies": acc, "n_voxels": acc.size, "max": acc.max(), "mean": acc.mean(),
            "pass": bool(acc.size >= C2ST_MIN_VOXELS and np.all(acc <= C2ST_MAX))}


def evaluate_gates(
    samples=None,
    truths=None,
    names: Sequence[str] | None = None,
    *,
    label: str = "",
    seed: int = 0,
    levels=DEFAULT_LEVELS,
    bounds=None,
    prior_samples=None,
    estimates=None,
    recovery_truths=None,
    reference_estimates=None,
    c2st_accuracies=None,
    khat=None,
    weights=None,
) -> dict:
    """Evaluate the gates for one test set (one model, prior, SNR).

    samples (n_sims, n_draws, n_params) posterior draws and truths (n_sims, n_params) feed SBC,
    coverage, TARP (with `bounds=(lower, upper)` for its normalisation) and, with prior_samples
    (n_prior, n_params), the width ratio. Recovery uses `estimates` (default: posterior mean of
    samples) against `recovery_truths` (default: truths), with `reference_estimates` (e.g. NLLS) for
    the gate; these may be {name: (n,) or (n, 3)} dicts so that axes are scored by angle.
    c2st_accuracies (n_voxels,) against a reference posterior; khat (n_voxels,) from `pareto_khat`.
    weights (n_sims, n_draws): importance weights of the draws (an importance-corrected posterior): SBC,
    coverage and TARP then use the weighted PIT (`sbc.weighted_randomised_pit`), the default estimates the
    weighted mean, and the width ratio is skipped.
    """
    report: dict = {"label": label, "warnings": []}
    gated = []
    if samples is not None:
        samples = np.asarray(samples, np.float64)
        truths = np.asarray(truths, np.float64)
        n_sims, n_draws, n_params = samples.shape
        names = list(names) if names is not None else [f"theta{j}" for j in range(n_params)]
        report.update(n_sims=n_sims, n_draws=n_draws, names=names)
        big_enough = n_sims >= MIN_SIMS and n_draws >= MIN_DRAWS
        if not big_enough:
            report["warnings"].append(
                f"test set {n_sims} × {n_draws} is below the required {MIN_SIMS} × {MIN_DRAWS}"
            )
        if n_sims < 7500:
            report["warnings"].append(
                f"{n_sims} simulations: coverage (0.02 floor) and TARP (|ATC| ≤ 0.01) gates fail a "
                "correct posterior often below ≈ 7500 simulations; use ≥ 10000"
            )

        if weights is not None:
            weights = np.asarray(weights, np.float64)
            weights = weights / weights.sum(axis=1, keepdims=True)
            report["weighted_draws"] = True
            p_values = ks_uniform_pvalues(weighted_randomised_pit(samples < truths[:, None, :], weights, seed=seed + 1))
        else:
            p_values = sbc_ks_test(sbc_ranks(samples, truths, seed=seed), n_draws, seed=seed + 1)
        sbc_pass, threshold = sbc_gate(p_values)
        report["sbc"] = {"p_values": _by_name(names, p_values), "threshold": threshold,
                         "pass": sbc_pass and big_enough}

        cov = expected_coverage(samples, truths, levels, seed=seed + 2, weights=weights)
        cov_pass, per_cell, conservative = coverage_gate(cov)
        report["coverage"] = {
            "levels": cov.levels, "se": cov.se,
            "coverage": _by_name(names, cov.coverage),
            "cell_pass": _by_name(names, per_cell),
            "conservative": _by_name(names, conservative),
            "pass": cov_pass,
        }

        t = tarp(samples, truths, seed=seed + 3, bounds=bounds, weights=weights)
        report["tarp"] = {"atc": t.atc, "atc_upper": t.atc_upper, "max_deviation": t.max_deviation,
                          "ks_pvalue": t.ks_pvalue, "pass": tarp_gate(t)}
        gated += ["sbc", "coverage", "tarp"]

        if prior_samples is not None and weights is None:
            ratio = posterior_prior_width_ratio(samples, prior_samples)
            report["width_ratio"] = {
                "median": _by_name(names, np.median(ratio, axis=0)),
                "p90": _by_name(names, np.quantile(ratio, 0.9, axis=0)),
                "method": "posterior sd / prior sd",
            }
        if estimates is None:
            estimates = samples.mean(axis=1) if weights is None else np.einsum("nl,nlp->np", weights, samples)

    if estimates is not None:
        # dict estimates name their own parameters (they may hold axes that samples do not)
        rec_names = list(estimates) if isinstance(estimates, Mapping) else names
        if rec_names is None:
            raise ValueError("names are needed for the recovery table")
        rec_truths = recovery_truths if recovery_truths is not None else truths
        table = recovery_table(estimates, rec_truths, rec_names, reference=reference_estimates)
        report["recovery"] = {"table": table}
        if reference_estimates is not None:
            report["recovery"]["pass"] = all(row["beats_reference"] for row in table.values())
            gated.append("recovery")

    if c2st_accuracies is not None:
        report["c2st"] = c2st_report(c2st_accuracies)
        gated.append("c2st")

    if khat is not None:
        k = np.asarray(khat, np.float64)
        report["pareto_khat"] = {
            "n_voxels": k.size, "n_flagged": int(np.sum(k > KHAT_FLAG)),
            "fraction_flagged": float(np.mean(k > KHAT_FLAG)), "median": np.median(k),
            "max": k.max(), "threshold": KHAT_FLAG,
        }

    report["gated"] = gated
    report["pass"] = bool(gated) and all(report[name]["pass"] for name in gated)
    return to_json(report)
