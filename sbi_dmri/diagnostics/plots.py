"""Diagnostic figures as PNG files: SBC rank histograms, coverage, TARP, recovery scatter.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas directly, never through pyplot,
so nothing here touches the global backend or leaks open figures. Each function returns the arrays
it plotted, so tests (and model cards) can check the numbers rather than the pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sbi_dmri.diagnostics.coverage import CoverageResult
from sbi_dmri.diagnostics.recovery import _columns, _errors
from sbi_dmri.diagnostics.sbc import rank_histogram
from sbi_dmri.diagnostics.tarp import TarpResult


def _grid(n_panels: int, panel_size: float = 3.0):
    n_cols = min(n_panels, 4)
    n_rows = math.ceil(n_panels / n_cols)
    fig = Figure(figsize=(panel_size * n_cols, panel_size * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, path) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _names(names, n: int) -> list[str]:
    return list(names) if names is not None else [f"θ{j}" for j in range(n)]


def plot_sbc_ranks(ranks, n_draws: int, path, *, names: Sequence[str] | None = None, n_bins: int = 20):
    """Rank histogram per parameter with the 99 % binomial band of a calibrated posterior.

    Drawn as simulations per rank (bins may hold unequal numbers of ranks). Returns {"edges",
    "counts" (n_bins, n_params), "expected", "lower", "upper"} (see
    `sbc.rank_histogram`).
    """
    edges, counts, expected, lower, upper = rank_histogram(ranks, n_draws, n_bins)
    names = _names(names, counts.shape[1])
    fig, axes = _grid(len(names))
    # drawn per rank (count / integers in the bin) so that unequal bins show a flat expectation
    width = np.diff(edges)
    for j, ax in enumerate(axes):
        # step="post" needs the last bin's value repeated at the right edge
        band_lo, band_hi = lower / width, upper / width
        band_lo, band_hi = np.append(band_lo, band_lo[-1]), np.append(band_hi, band_hi[-1])
        ax.fill_between(edges, band_lo, band_hi, step="post", color="0.85", label="99 % band")
        ax.stairs(counts[:, j] / width, edges, color="C0", linewidth=1.5)
        ax.stairs(expected / width, edges, color="k", linestyle="--", linewidth=0.8)
        ax.set_title(names[j])
        ax.set_xlabel("rank of truth among draws")
    axes[0].set_ylabel("simulations per rank")
    _save(fig, path)
    return {"edges": edges, "counts": counts, "expected": expected, "lower": lower, "upper": upper}


def plot_coverage(result: CoverageResult, path, *, names: Sequence[str] | None = None, n_se: float = 3.0):
    """Empirical vs nominal coverage per parameter, with the ±n_se binomial SE band around the diagonal.

    Returns {"levels", "coverage" (n_levels, n_params), "lower", "upper"} (the band).
    """
    lower = result.levels - n_se * result.se
    upper = result.levels + n_se * result.se
    names = _names(names, result.coverage.shape[1])
    fig, axes = _grid(1, panel_size=4.0)
    ax = axes[0]
    ax.fill_between(result.levels, lower, upper, color="0.85", label=f"±{n_se:g} SE")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    for j, name in enumerate(names):
        ax.plot(result.levels, result.coverage[:, j], "o-", markersize=3, label=name)
    ax.set(xlabel="nominal coverage", ylabel="empirical coverage", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"central intervals, {result.n_sims} simulations")
    ax.legend(fontsize="small")
    _save(fig, path)
    return {"levels": result.levels, "coverage": result.coverage, "lower": lower, "upper": upper}


def plot_tarp(result: TarpResult, path):
    """TARP expected coverage ECP(α) vs credibility α, with the diagonal. Returns {"alpha", "ecp"}."""
    fig, axes = _grid(1, panel_size=4.0)
    ax = axes[0]
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.plot(result.alpha, result.ecp, "C0", linewidth=1.5)
    ax.set(xlabel="credibility level α", ylabel="expected coverage", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"TARP: ATC {result.atc:+.4f}, upper half {result.atc_upper:+.4f}")
    _save(fig, path)
    return {"alpha": result.alpha, "ecp": result.ecp}


def plot_recovery(estimates, truths, names: Sequence[str], path):
    """Estimate vs truth per scalar parameter (with the identity line); for axes, a histogram of the
    angular error in degrees. Returns {name: (truth, estimate)} for scalars, {name: angle_deg} for axes.
    """
    est, tru = _columns(estimates, names), _columns(truths, names)
    fig, axes = _grid(len(names))
    plotted = {}
    for ax, name in zip(axes, names):
        err, is_axis = _errors(est[name], tru[name])
        if is_axis:
            ax.hist(err, bins=30, range=(0, 90), color="C0")
            ax.set(xlabel="angular error (deg)", ylabel="voxels")
            plotted[name] = err
        else:
            ax.scatter(tru[name], est[name], s=2, alpha=0.4)
            lo = min(tru[name].min(), est[name].min())
            hi = max(tru[name].max(), est[name].max())
            ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
            ax.set(xlabel="truth", ylabel="estimate")
            plotted[name] = (tru[name], est[name])
        ax.set_title(name)
    _save(fig, path)
    return plotted
