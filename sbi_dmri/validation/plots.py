"""Departure plots (matplotlib, Agg backend), written atomically beside the records."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def departure_plot(path, curves: list[dict], *, xlabel: str, title: str, tolerance=None) -> Path:
    """Plot kernel − MC against x for each curve {label, x, error, stderr}, with ±3 SE bands."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        x, e, se = (np.asarray(c[k], float) for k in ("x", "error", "stderr"))
        line, = ax.plot(x, e, marker="o", ms=3, label=c["label"])
        ax.fill_between(x, e - 3 * se, e + 3 * se, color=line.get_color(), alpha=0.15)
    ax.axhline(0.0, color="k", lw=0.8)
    if tolerance is not None:
        for s in (-1, 1):
            ax.axhline(s * tolerance, color="grey", ls="--", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ΔS = kernel − Monte Carlo")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
