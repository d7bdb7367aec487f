"""Plots write valid PNG files and return the numbers they draw."""

import numpy as np

from sbi_dmri.diagnostics.coverage import expected_coverage
from sbi_dmri.diagnostics.plots import plot_coverage, plot_recovery, plot_sbc_ranks, plot_tarp
from sbi_dmri.diagnostics.sbc import sbc_ranks
from sbi_dmri.diagnostics.tarp import tarp
from sbi_dmri.diagnostics.toy import toy_test_set

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"  # the first chunk of every valid PNG
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100


def test_all_plots(tmp_path):
    samples, truths = toy_test_set(31, 2000, 99)  # 100 possible ranks: 20 bins of 5
    names = ["a", "b", "c"]

    ranks = sbc_ranks(samples, truths)
    out = plot_sbc_ranks(ranks, 99, tmp_path / "sbc.png", names=names, n_bins=20)
    _assert_png(tmp_path / "sbc.png")
    for j in range(3):
        np.testing.assert_array_equal(out["counts"][:, j], np.bincount(ranks[:, j] // 5, minlength=20))
    np.testing.assert_allclose(out["expected"], 100.0)
    assert np.all(out["lower"] < 100) and np.all(out["upper"] > 100)

    cov = expected_coverage(samples, truths, levels=np.linspace(0.05, 0.95, 19))
    out = plot_coverage(cov, tmp_path / "sub" / "coverage.png", names=names)  # creates the folder
    _assert_png(tmp_path / "sub" / "coverage.png")
    np.testing.assert_allclose(out["coverage"], cov.coverage)
    np.testing.assert_allclose(out["upper"] - out["levels"], 3 * np.sqrt(cov.levels * (1 - cov.levels) / 2000))

    result = tarp(samples, truths)
    out = plot_tarp(result, tmp_path / "tarp.png")
    _assert_png(tmp_path / "tarp.png")
    f = result.credibility.ravel()
    np.testing.assert_allclose(out["ecp"], [np.mean(f < a) for a in out["alpha"]])

    axes_true = np.tile([0.0, 0.0, 1.0], (2000, 1))
    axes_est = np.column_stack([np.sin(0.1), 0.0, -np.cos(0.1)]).repeat(2000, axis=0)  # flipped, 5.73°
    estimates = {"a": samples[:, :, 0].mean(axis=1), "orientation": axes_est}
    out = plot_recovery(estimates, {"a": truths[:, 0], "orientation": axes_true}, ["a", "orientation"],
                        tmp_path / "recovery.png")
    _assert_png(tmp_path / "recovery.png")
    np.testing.assert_array_equal(out["a"][0], truths[:, 0])
    np.testing.assert_allclose(out["orientation"], np.degrees(0.1))
