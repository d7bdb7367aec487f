"""Parameter recovery (RMSE, bias, against a reference estimator such as NLLS) and identifiability.

Scalars: error e = estimate − truth in the parameter's unit; RMSE = √mean e², bias = mean e.

Orientations (axes, n ≡ −n): the error is the angle between the axes in degrees,
arccos(|n·n̂| / (‖n‖‖n̂‖)) ∈ [0°, 90°], invariant to flipping either vector. RMSE is √mean(angle²);
a signed bias does not exist for axes, so `bias` is None and `mean_abs` gives the mean angle.

A point estimate of an axis from posterior draws must also respect n ≡ −n: averaging the vectors
cancels antipodal draws, so `axis_mean` takes the principal eigenvector of the mean dyad E[n nᵀ].

Posterior-to-prior width ratio (EVALUATION.md: report it for parameters a protocol cannot
identify): per test voxel and parameter, the posterior sd divided by the prior sd
(`method="std"`), or the width of the central 90 % interval of the draws divided by that of the
prior (`method="interval"`, robust to skewed bounded posteriors). ≈ 1: the data taught nothing;
≪ 1: well identified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def angular_error_deg(estimate, truth) -> np.ndarray:
    """Angle between axes (…, 3) and (…, 3) in degrees, ∈ [0, 90], invariant to n → −n."""
    a = np.asarray(estimate, np.float64)
    b = np.asarray(truth, np.float64)
    cos = np.abs(np.sum(a * b, axis=-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def axis_mean(axis_draws) -> np.ndarray:
    """Mean axis (…, 3) of draws (…, n_draws, 3): principal eigenvector of the mean dyad, sign z ≥ 0."""
    n = np.asarray(axis_draws, np.float64)
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    dyad = np.einsum("...di,...dj->...ij", n, n) / n.shape[-2]
    _, vectors = np.linalg.eigh(dyad)
    principal = vectors[..., :, -1]  # eigh sorts eigenvalues ascending
    return np.where(principal[..., 2:3] < 0, -principal, principal)


def _columns(values, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Accept {name: (n,) or (n, 3)} or an array (n, n_params) whose columns follow `names`."""
    if isinstance(values, Mapping):
        return {name: np.asarray(values[name], np.float64) for name in names}
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"array of shape {values.shape} does not match {len(names)} names")
    return {name: values[:, j] for j, name in enumerate(names)}


def _errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, bool]:
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate {estimate.shape} and truth {truth.shape} differ in shape")
    if estimate.ndim == 2 and estimate.shape[1] == 3:
        return angular_error_deg(estimate, truth), True
    if estimate.ndim != 1:
        raise ValueError(f"expected scalars (n,) or axes (n, 3), got {estimate.shape}")
    return estimate - truth, False


def _summary(err: np.ndarray, is_axis: bool) -> dict:
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "bias": None if is_axis else float(np.mean(err)),
        "mean_abs": float(np.mean(np.abs(err))),
    }


def recovery_table(
    estimates,
    truths,
    names: Sequence[str],
    *,
    reference=None,
) -> dict[str, dict]:
    """Per-parameter recovery: {name: {"rmse", "bias", "mean_abs", "unit_note", and with a reference
    "reference_rmse", "reference_bias", "rmse_ratio" (= rmse / reference_rmse), "beats_reference"
    (rmse ≤ reference_rmse, the EVALUATION.md gate)}}.

    estimates, truths, reference: {name: (n,) scalars or (n, 3) axes} or arrays (n, n_params) whose
    columns follow `names`. Axes are recognised by their trailing dimension 3 and scored by angle
    (degrees); scalars keep their own units.
    """
    est, tru = _columns(estimates, names), _columns(truths, names)
    ref = _columns(reference, names) if reference is not None else None
    table = {}
    for name in names:
        err, is_axis = _errors(est[name], tru[name])
        row = _summary(err, is_axis)
        row["unit_note"] = "angle (deg)" if is_axis else "parameter unit"
        if ref is not None:
            ref_err, _ = _errors(ref[name], tru[name])
            ref_row = _summary(ref_err, is_axis)
            row["reference_rmse"] = ref_row["rmse"]
            row["reference_bias"] = ref_row["bias"]
            row["rmse_ratio"] = row["rmse"] / ref_row["rmse"] if ref_row["rmse"] > 0 else float("inf")
            row["beats_reference"] = bool(row["rmse"] <= ref_row["rmse"])
        table[name] = row
    return table


def posterior_prior_width_ratio(samples, prior_samples, *, method: str = "std", level: float = 0.9):
    """Posterior-to-prior width ratio per test voxel and parameter, (n_sims, n_params).

    samples (n_sims, n_draws, n_params) posterior draws; prior_samples (n_prior, n_params) prior
    draws; same units. method "std" (sd ratio) or "interval" (central `level` interval width ratio).
    """
    samples = np.asarray(samples, np.float64)
    prior_samples = np.asarray(prior_samples, np.float64)
    if samples.ndim != 3 or prior_samples.ndim != 2 or samples.shape[2] != prior_samples.shape[1]:
        raise ValueError(
            f"expected samples (n_sims, n_draws, p) and prior_samples (n_prior, p), got "
            f"{samples.shape} and {prior_samples.shape}"
        )
    if method == "std":
        return samples.std(axis=1, ddof=1) / prior_samples.std(axis=0, ddof=1)[None, :]
    if method == "interval":
        q = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
        post = np.diff(np.quantile(samples, q, axis=1), axis=0)[0]
        prior = np.diff(np.quantile(prior_samples, q, axis=0), axis=0)[0]
        return post / prior[None, :]
    raise ValueError(f"method must be 'std' or 'interval', got {method!r}")
