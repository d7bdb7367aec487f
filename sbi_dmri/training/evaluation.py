"""Calibration diagnostics measured at the end of training and stored in the checkpoint's meta.

On `n_sims` fresh simulations from the training distribution (fixed key), `n_draws` posterior draws
each, in the network's θ space (every diagnostic below is invariant under the per-dimension
monotone maps to constrained units, except TARP, which is computed on standardized θ as it is):
expected coverage of central intervals, SBC rank KS p-values, TARP ATC, and the EVALUATION.md gates
(`sbi_dmri.diagnostics`). Axes enter through their two chart coordinates in the voxel's frame.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import nnx

from .data import Simulator, network_batch


def draw_posterior_samples(model, simulator: Simulator, space, key, n_sims: int, n_draws: int, chunk: int):
    """(samples (n_sims, n_draws, D), truths (n_sims, D)) in θ space, simulated in chunks of `chunk`."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def one(state, k):
        m = nnx.merge(graphdef, state)
        k_sim, k_draw = jax.random.split(k)
        batch = network_batch(simulator.simulate(k_sim, chunk), space)
        return m.sample(m.context(batch), k_draw, n_draws), batch["theta"]

    samples, truths = [], []
    for i in range(-(-n_sims // chunk)):
        s, t = one(state, jax.random.fold_in(key, i))
        samples.append(np.asarray(s))
        truths.append(np.asarray(t))
    return np.concatenate(samples)[:n_sims], np.concatenate(truths)[:n_sims]


def posterior_diagnostics(model, simulator: Simulator, space, key, n_sims: int, n_draws: int, chunk: int,
                          plot_dir: str | None = None) -> dict:
    """Coverage, SBC and TARP with their gates, as JSON-ready numbers (see module docstring).

    With `plot_dir`, also writes coverage, SBC-rank and TARP figures there (paths under "plots").
    """
    from ..diagnostics.coverage import coverage_gate, expected_coverage
    from ..diagnostics.sbc import sbc_gate, sbc_ks_test, sbc_ranks
    from ..diagnostics.tarp import tarp, tarp_gate

    samples, truths = draw_posterior_samples(model, simulator, space, key, n_sims, n_draws, chunk)
    names = theta_names(space)
    cov = expected_coverage(samples, truths)
    cov_pass, _, _ = coverage_gate(cov)
    ranks = sbc_ranks(samples, truths)
    p = sbc_ks_test(ranks, n_draws)
    sbc_pass, threshold = sbc_gate(p)
    t = tarp(samples, truths)
    plots = {}
    if plot_dir is not None:
        from ..diagnostics.plots import plot_coverage, plot_sbc_ranks, plot_tarp

        os.makedirs(plot_dir, exist_ok=True)
        plots = {name: os.path.join(plot_dir, f"{name}.png") for name in ("coverage", "sbc_ranks", "tarp")}
        plot_coverage(cov, plots["coverage"], names=names)
        plot_sbc_ranks(ranks, n_draws, plots["sbc_ranks"], names=names)
        plot_tarp(t, plots["tarp"])
    return {
        "n_sims": int(n_sims), "n_draws": int(n_draws), "theta_names": names,
        "coverage": {f"{lvl:.2f}": dict(zip(names, map(float, row))) for lvl, row in zip(cov.levels, cov.coverage)},
        "coverage_pass": bool(cov_pass),
        "sbc_ks_p": dict(zip(names, map(float, p))), "sbc_threshold": float(threshold), "sbc_pass": bool(sbc_pass),
        "tarp_atc": float(t.atc), "tarp_atc_upper": float(t.atc_upper), "tarp_pass": bool(tarp_gate(t)),
        "plots": plots,
    }


def theta_names(space) -> list[str]:
    """A name per θ dimension: the parameter's, with _u/_v for the two chart coordinates of an axis."""
    out = []
    for f in space.prior.factors:
        if f.dim == 2 and len(f.names) == 1:
            out += [f"{f.names[0]}_u", f"{f.names[0]}_v"]
        else:
            out += list(f.names)
    return out
