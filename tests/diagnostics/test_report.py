"""The gate report is strict JSON, passes the exact posterior and fails a wrong one, per gate."""

import json

import numpy as np

from sbi_dmri.diagnostics.report import evaluate_gates


def test_report_on_exact_posterior_passes_and_is_strict_json(exact_set):
    samples, truths = exact_set
    rng = np.random.default_rng(0)
    report = evaluate_gates(
        samples, truths, ["a", "b", "c"], label="toy exact",
        prior_samples=truths,
        reference_estimates=truths + rng.normal(0, 1.0, truths.shape),  # a worse estimator
        c2st_accuracies=np.full(20, 0.52),
        khat=np.array([0.1, 0.3, 0.8, np.inf]),
    )
    text = json.dumps(report, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text) == report
    assert report["pass"], {k: report[k].get("pass") for k in report["gated"]}
    assert report["gated"] == ["sbc", "coverage", "tarp", "recovery", "c2st"]
    assert report["sbc"]["threshold"] == 0.05 / 3
    assert set(report["coverage"]["coverage"]) == {"a", "b", "c"}
    assert report["pareto_khat"]["n_flagged"] == 2 and report["pareto_khat"]["max"] is None
    assert 0 < report["width_ratio"]["median"]["a"] < 1
    assert report["recovery"]["table"]["a"]["beats_reference"]


def test_report_fails_each_gate_it_should(overconfident_set):
    samples, truths = overconfident_set
    report = evaluate_gates(samples, truths, c2st_accuracies=np.full(19, 0.5))
    assert not report["pass"]
    for gate in ("sbc", "coverage", "tarp", "c2st"):  # c2st: too few voxels
        assert report[gate]["pass"] is False, gate
    small = evaluate_gates(samples[:500], truths[:500])
    assert small["sbc"]["pass"] is False and len(small["warnings"]) == 2


def test_report_recovery_with_axes_gates_against_reference():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(300, 3))
    truths = {"orientation": axes, "d": rng.uniform(1, 3, 300)}
    good = {"orientation": -axes + rng.normal(0, 0.05, (300, 3)), "d": truths["d"] + rng.normal(0, 0.1, 300)}
    bad = {"orientation": axes + rng.normal(0, 0.3, (300, 3)), "d": truths["d"] + rng.normal(0, 0.3, 300)}
    report = evaluate_gates(estimates=good, recovery_truths=truths, reference_estimates=bad)
    json.dumps(report, allow_nan=False)
    assert report["gated"] == ["recovery"] and report["pass"]
    assert report["recovery"]["table"]["orientation"]["rmse"] < 5.0  # degrees, despite the flip
    assert not evaluate_gates(estimates=bad, recovery_truths=truths, reference_estimates=good)["pass"]
