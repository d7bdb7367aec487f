"""Is the importance-corrected posterior the exact posterior, and is a model card's failed coverage cell a
property of the posterior or of its test set? Two checks on one card cell (model, protocol, SNR):

1. **network-free reference** (`--prior-voxels V`): for the first V voxels of a test set, the exact posterior
   by importance sampling from the prior itself (`--prior-draws` draws per voxel, weights = the likelihood
   `noise.log_likelihood_s0_marginal` alone, no network anywhere), against the corrected posterior as the
   model card computes it (network draws + adaptive Gaussian stage, `--draws`, `--min-ess`). Per θ dimension:
   the ratio of their 50 % and 90 % central interval widths and the shift of the median in units of the
   reference's sd (from its 90 % interval / 3.29), mean ± SE over voxels. A network that missed part of the
   posterior, or weights that under-represent the tails, show as ratios below 1.
2. **fresh test sets** (`--seeds`): the card's coverage of the corrected posterior and of the network alone on
   new test sets of `--sims` simulations (the card's `card_test_set` with another seed, same SNR slot), with the
   EVALUATION.md gate (≥ nominal − 3 SE and ≥ nominal − 0.02). A cell that fails on the card's seed 0 and passes
   on fresh seeds failed on its test set's draw.

    python benchmarks/corrected_posterior_check.py --model sandi --protocol hardi_2shell --snr 20 \
        --prior-voxels 400 --prior-draws 64000 --seeds 1 2 [--sims 5000] [--draws 1000] [--min-ess 300] \
        [--reference-seed 2] [--false-alarm-cells 9] [--json out.json]

The prior reference is the slow part: SANDI on hardi_2shell, 64000 draws per voxel, ≈ 3.2 s per voxel on the
2-core CPU (median effective draws ≈ 520 at SNR 20). Each fresh test set of 5000 × 1000 draws: ≈ 3 min.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Levels of the interval comparison: 5, 10, 25, 50, 75, 90, 95 %.
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
Q05, Q25, Q50, Q75, Q95 = (QUANTILES.index(q) for q in (0.05, 0.25, 0.5, 0.75, 0.95))
SNRS = (10.0, 20.0, 50.0)  # the card's SNR slots: the test set's key depends on the SNR's place


def _test_set(net, acq, snr, seed, n):
    from sbi_dmri.inference.model_card import card_test_set
    from sbi_dmri.inference.test_sets import test_set_prior

    return card_test_set(test_set_prior(net.space, "uniform"), net.space.model, acq, snr, SNRS.index(snr), n, seed)


def _corrected(net, acq, y, truth, key, snr, draws, min_ess):
    """The card's corrected draws: (draws (V, S, D), truths θ (V, D), normalised weights (V, S))."""
    from sbi_dmri.inference.importance_correction import corrected_weights
    from sbi_dmri.inference.model_card import _redrawn_theta_draws

    s, t, lw, counts, _ = _redrawn_theta_draws(net, y, acq, truth, draws, jax.random.fold_in(key, 1), snr, min_ess)
    return s, t, np.asarray(corrected_weights(jnp.asarray(lw), jnp.asarray(counts)), np.float64)


def _quantiles(theta, w):
    """(V, S, D) draws, (V, S) weights → (V, len(QUANTILES), D) weighted quantiles."""
    from sbi_dmri.inference.importance_correction import weighted_quantile

    q = jnp.asarray(QUANTILES)
    return np.stack([np.asarray(weighted_quantile(jnp.asarray(theta[..., j]), jnp.asarray(w, jnp.float32), q)).T
                     for j in range(theta.shape[-1])], axis=-1)


def prior_reference(net, acq, y, snr, n_draws, *, chunk=8000, voxels_per_call=4, seed=99, progress=True):
    """Exact posterior quantiles by importance sampling from the prior: ((V, 7, D) quantiles, (V,) ESS)."""
    from sbi_dmri.inference import importance_correction as ic
    from sbi_dmri.inference.engine import _float32_acquisition
    from sbi_dmri.inference.test_sets import test_set_prior
    from sbi_dmri.networks.features import protocol_features
    from sbi_dmri.pretrained import _build_batch

    sp = net.space
    prior = test_set_prior(sp, "uniform")
    a32 = _float32_acquisition(acq)
    feats = protocol_features(a32)
    b0 = jnp.asarray(np.asarray(acq.bvalues) <= 0.05)
    sig_fn = ic.likelihood_signal(sp.model, acq)

    @jax.jit
    def loglik(yb, theta):  # log target − log prior = the likelihood: the prior's draws need no other weight
        batch = _build_batch(yb, feats, b0, a32.bvalues, a32.directions, None)
        sigma = jnp.full(yb.shape[:1], 1.0 / snr, jnp.float32)
        return (ic.log_target(batch, theta, sp, a32, sigma, "rician", signal_fn=sig_fn)
                - sp.prior_log_prob_theta(theta, None))

    qs, ess = [], []
    t0 = time.perf_counter()
    for i in range(0, len(y), voxels_per_call):
        yb = jnp.asarray(y[i:i + voxels_per_call])
        th, lw = [], []
        for c in range(0, n_draws, chunk):
            k = jax.random.fold_in(jax.random.PRNGKey(seed), i * 1000 + c)
            t = sp.to_theta(prior.sample(k, len(yb) * chunk), None).reshape(len(yb), chunk, -1)
            th.append(np.asarray(t))
            lw.append(np.asarray(loglik(yb, t)))
        th, lw = np.concatenate(th, 1), np.concatenate(lw, 1).astype(np.float64)
        # plain self-normalised weights, not truncated: the reference should carry no cap of the method it checks
        w = np.exp(lw - lw.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        ess.append(np.asarray(ic.effective_sample_size(w)))
        qs.append(_quantiles(th, w))
        if progress and (i // voxels_per_call) % 10 == 0:
            print(f"  prior reference: {i + len(yb)}/{len(y)} voxels, {time.perf_counter() - t0:.0f} s", flush=True)
    return np.concatenate(qs), np.concatenate(ess)


def compare_intervals(q_ref, q_cor, names, ess_ref, min_ess=100.0):
    """Per dimension: width ratios (corrected/reference) of the 50 % and 90 % intervals, median shift / sd."""
    ok = ess_ref >= min_ess
    out = {"voxels": int(ok.sum()), "reference_ess_median": float(np.median(ess_ref)), "by_dim": {}}
    for j, name in enumerate(names):
        r, c = q_ref[ok, :, j], q_cor[ok, :, j]
        sd = (r[:, Q95] - r[:, Q05]) / 3.29  # a Gaussian's 90 % interval is 3.29 sd wide
        vals = {"width50_ratio": (c[:, Q75] - c[:, Q25]) / (r[:, Q75] - r[:, Q25]),
                "width90_ratio": (c[:, Q95] - c[:, Q05]) / (r[:, Q95] - r[:, Q05]),
                "median_shift_sd": (c[:, Q50] - r[:, Q50]) / sd}
        out["by_dim"][name] = {k: [float(np.mean(v)), float(np.std(v) / np.sqrt(len(v)))] for k, v in vals.items()}
    return out


def coverage_on(s, t, w, names, seed=0):
    """Coverage − nominal of the weighted draws (as the card's gate), and whether the gate passes."""
    from sbi_dmri.diagnostics.coverage import coverage_gate, expected_coverage

    cov = expected_coverage(s, t, LEVELS, seed=seed + 2, weights=w)
    passed, cells, _ = coverage_gate(cov)
    dev = cov.coverage - np.asarray(LEVELS)[:, None]
    z = dev / cov.se[:, None]
    return {"pass": passed, "deviation": {n: [float(x) for x in dev[:, j]] for j, n in enumerate(names)},
            "worst_z": float(z.min()), "failed_cells": int((~cells).sum())}


def gate_false_alarm(n_sims: int, n_params: int, n_cells: int, repeats: int = 4000, seed: int = 0) -> tuple[float, float]:
    """(P(a cell fails), P(≥ 1 of n_cells fails)) for an exact posterior: uniform PITs, the coverage gate."""
    from sbi_dmri.diagnostics.coverage import CoverageResult, coverage_gate

    rng = np.random.default_rng(seed)
    levels = np.asarray(LEVELS)
    se = np.sqrt(levels * (1 - levels) / n_sims)
    fails = 0
    for _ in range(repeats):
        u = rng.uniform(size=(n_sims, n_params))
        cov = (np.abs(u[None] - 0.5) <= levels[:, None, None] / 2).mean(axis=1)
        fails += not coverage_gate(CoverageResult(levels=levels, coverage=cov, se=se, n_sims=n_sims))[0]
    p = fails / repeats
    return p, 1.0 - (1.0 - p) ** n_cells


def main(argv=None):
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol
    from sbi_dmri.training.evaluation import theta_names

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="sandi")
    ap.add_argument("--protocol", default="hardi_2shell")
    ap.add_argument("--snr", type=float, default=20.0, choices=SNRS)
    ap.add_argument("--prior-voxels", type=int, default=400)
    ap.add_argument("--prior-draws", type=int, default=64000)
    ap.add_argument("--reference-seed", type=int, default=2, help="test-set seed of the prior-reference voxels")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2], help="fresh test sets (0 is the card's)")
    ap.add_argument("--sims", type=int, default=5000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--min-ess", type=float, default=0.0, help="corrected posterior's redraw threshold")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--false-alarm-cells", type=int, default=0,
                    help="also: how often the coverage gate fails an exact posterior of this model's dimension, per "
                         "cell of --sims simulations and for a card of this many cells (cells independent)")
    args = ap.parse_args(argv)

    net = load_pretrained(args.model)
    acq = load_protocol(args.protocol)
    names = theta_names(net.space)
    result = {"args": vars(args)}
    if args.false_alarm_cells:
        p_cell, p_card = gate_false_alarm(args.sims, len(names), args.false_alarm_cells)
        result["false_alarm"] = {"cell": p_cell, "card": p_card}
        print(f"exact posterior, {len(names)} parameters, {args.sims} simulations: the coverage gate fails a cell with "
              f"probability {p_cell:.3f}, a card of {args.false_alarm_cells} cells {p_card:.2f}")
    if args.prior_voxels:
        truth, y, key = _test_set(net, acq, args.snr, args.reference_seed, args.sims)
        y, truth = y[:args.prior_voxels], {k: v[:args.prior_voxels] for k, v in truth.items()}
        t0 = time.perf_counter()
        q_ref, ess_ref = prior_reference(net, acq, y, args.snr, args.prior_draws)
        s, _, w = _corrected(net, acq, y, truth, key, args.snr, args.draws, args.min_ess)
        cmp = compare_intervals(q_ref, _quantiles(s, w), names, ess_ref)
        cmp["seconds"] = time.perf_counter() - t0
        result["prior_reference"] = cmp
        print(f"\ncorrected vs prior-IS reference, {cmp['voxels']} voxels (reference median ESS "
              f"{cmp['reference_ess_median']:.0f}); mean ± SE over voxels")
        print("| θ | 50 % width ratio | 90 % width ratio | median shift / sd |\n|---|---|---|---|")
        for n, v in cmp["by_dim"].items():
            print(f"| {n} | " + " | ".join(f"{m:.3f} ± {e:.3f}" for m, e in v.values()) + " |")
    result["fresh"] = {}
    for seed in args.seeds:
        truth, y, key = _test_set(net, acq, args.snr, seed, args.sims)
        s, t, w = _corrected(net, acq, y, truth, key, args.snr, args.draws, args.min_ess)
        # every row starts with at least draws/2 equal-weight draws of the network (`adaptive_importance`'s
        # stage 1, also in redrawn rows): the network alone, judged by the rank PIT as the card does
        n_net = max(args.draws // 2, 1)
        res = {"corrected": coverage_on(s, t, w, names, seed),
               "network": coverage_on(s[:, :n_net], t, None, names, seed),
               "ess_median": float(np.median(1.0 / np.sum(w**2, 1)))}
        result["fresh"][seed] = res
        for lab in ("corrected", "network"):
            r = res[lab]
            print(f"\nseed {seed}, {lab}: gate {'pass' if r['pass'] else 'FAIL'}, worst {r['worst_z']:.1f} SE"
                  + (f", median ESS {res['ess_median']:.0f}" if lab == "corrected" else ""))
            for n, d in r["deviation"].items():
                print(f"  {n:10s} " + " ".join(f"{x:+.4f}" for x in d))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
