"""Measured model cards for shipped networks: `evaluate_checkpoint(net, acquisition) -> dict`, `write_model_card`.

Per SNR (Rician, S0 = 1) a fixed, seeded test set of parameters drawn from the network's prior ("uniform"
test set of EVALUATION.md), measured with one protocol of the training family:

- calibration (SBC ranks, expected coverage, TARP) from `diagnostics.evaluate_gates`, on the network's
  standardized θ draws (the diagnostics are invariant to the per-dimension monotone charts, except TARP);
- recovery: the posterior mean (constrained units, axes scored by angle) against NLLS (`fit_nlls`)
  on the same noisy voxels, RMSE and bias;
- posterior-to-prior width ratio per parameter (median over the test set, constrained units);
- per-voxel trust: the Pareto k̂ of the importance weights under the analytic likelihood, and the
  fraction of voxels flagged (k̂ > 0.7);
- C2ST against a NUTS reference posterior (`fitting.sample_posterior`, Rician likelihood at the known σ
  of the signals divided by their b = 0 mean, S0 marginalised as in the network's training, 4 chains) on the first `c2st_voxels` voxels of the test set, in the network's θ space (the same
  frame for both): held-out classifier accuracy per voxel (0.5 = indistinguishable; gate ≤ 0.60), with
  the reference's largest split-R̂.

    python -m sbi_dmri.inference.model_card checkpoints/ball_stick --protocol hcp_3shell clinical_2shell hardi_2shell
"""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _theta_draws(net, signals, acquisition, truth, n_draws: int, key, snr: float, *, weights: bool = False,
                 adaptive: bool = False, chunk: int | None = None):
    """(samples (n, n_draws, D), truths (n, D)[, log weights (n, n_draws)]) in the network's θ space.

    weights: also the importance log-weights of the draws under the network's training noise model at
    σ = 1/snr (`inference.importance_correction`); adaptive: the draws and weights of the two-stage
    `adaptive_importance` instead of the network's draws alone. Runs `chunk` voxels per compiled call
    (the last one padded; default: 2·10⁵ draws per call), so memory stays bounded for large test sets.
    """
    from ..networks.features import protocol_features
    from ..pretrained import _build_batch
    from .engine import _float32_acquisition
    from .importance_correction import likelihood_signal, log_importance_weights, network_importance

    graphdef, state = nnx.split(net.network)
    acq = _float32_acquisition(acquisition)
    features = protocol_features(acq)
    b0 = jnp.asarray(np.asarray(acquisition.bvalues) <= 0.05)
    noise_kind = (net.meta.get("noise") or {}).get("kind", "rician")
    signal_fn = likelihood_signal(net.space.model, acquisition)

    @jax.jit
    def run(state, y, truth, key):
        m = nnx.merge(graphdef, state)
        snr_v = jnp.full(y.shape[:1], snr, jnp.float32) if net.needs_snr else None
        batch = _build_batch(y, features, b0, acq.bvalues, acq.directions, snr_v)
        ctx = m.context(batch)
        sigma = jnp.full(y.shape[:1], 1.0 / snr, jnp.float32)
        if adaptive:
            theta, lw = network_importance(m, ctx, batch, net.space, acq, sigma, noise_kind, key, n_draws, signal_fn)
        else:
            theta = m.sample(ctx, key, n_draws)
            lw = (log_importance_weights(m, ctx, theta, batch, net.space, acq, sigma, noise_kind, signal_fn=signal_fn)
                  if weights else jnp.zeros(theta.shape[:2]))
        return theta, net.space.to_theta(truth, batch["frame"]), lw

    y_all = np.asarray(signals, np.float32)
    n = len(y_all)
    c = min(chunk or max(16, DRAWS_PER_CALL // n_draws), n)
    parts = []
    for i in range(0, n, c):
        y = y_all[i:i + c]
        t = {k: np.asarray(v)[i:i + c] for k, v in truth.items()}
        pad = c - len(y)
        if pad:  # repeat the first voxel: one compiled shape for every chunk
            y = np.concatenate([y, np.repeat(y[:1], pad, axis=0)])
            t = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in t.items()}
        out = run(state, jnp.asarray(y), {k: jnp.asarray(v) for k, v in t.items()}, jax.random.fold_in(key, i))
        parts.append([np.asarray(a)[:c - pad] for a in out])
    s, t, lw = (np.concatenate(a) for a in zip(*parts))
    return (s, t) + ((lw,) if weights or adaptive else ())


def _redrawn_theta_draws(net, signals, acquisition, truth, n_draws: int, key, snr: float, min_ess: float = 0.0):
    """`_theta_draws(adaptive=True)` with `min_ess` redraws, as `infer_voxels` does them: (draws (n, S, D), truths,
    log weights (n, S), counts (n,) each row's count of its own draws for `corrected_weights`, redrawn (n,)).

    Voxels with fewer than `min_ess` effective draws are drawn again with REDRAW_FACTOR × n_draws draws, which
    replace the first ones; S = REDRAW_FACTOR · n_draws when any is, the other rows padded with zero weights.
    """
    from .importance_correction import REDRAW_KEY, needs_redraw, pad_with_redraws

    s, t, lw = _theta_draws(net, signals, acquisition, truth, n_draws, key, snr, adaptive=True)
    redrawn = needs_redraw(lw, min_ess)
    s, lw, counts = pad_with_redraws(s, lw, redrawn, lambda n2: _theta_draws(
        net, np.asarray(signals)[redrawn], acquisition, {k: np.asarray(v)[redrawn] for k, v in truth.items()}, n2,
        jax.random.fold_in(key, REDRAW_KEY), snr, adaptive=True)[::2], n_draws)
    return s, t, lw, counts, redrawn


#: Voxels × draws per compiled call of the card's posterior evaluations (memory: × measurements × 4 bytes
#: per intermediate array; NODDI's Watson signal keeps several).
DRAWS_PER_CALL = 200_000

#: NUTS reference of the C2ST: warm-up and draws per chain (4 chains), thinned to the C2ST's draws. EVALUATION.md
#: asks R̂ < 1.01 and ESS > 400; 250 draws per chain gave R̂ up to 1.04 on NODDI.
NUTS_WARMUP, NUTS_DRAWS_PER_CHAIN = 1000, 1000

#: The warm-up's target acceptance (Stan's adapt_delta). SANDI's posterior has funnels (f_neurite → 0 leaves d_in
#: unidentified): at 0.8, 80 divergences in 80 chains of the card's 20 voxels, at 0.9 with network-draw starts 13
#: (benchmarks/results/importance.md, session 9).
NUTS_TARGET_ACCEPTANCE = 0.9


@functools.lru_cache(maxsize=8)
def _batched_signal(model):
    """jit(vmap(model.signal)) over parameter sets, compiled once per model for all SNRs and protocols."""
    return jax.jit(jax.vmap(model.signal, in_axes=(None, 0)))


def card_test_set(prior, model, acquisition, snr: float, snr_index: int, n: int, seed: int = 0):
    """The card's seeded test set at one SNR: (truths name → (n, ...), noisy signals (n, M) float32, draws key).

    Parameters from `prior`, Rician noise at `snr` (S0 = 1); the key depends on `seed` and the SNR's index in
    the card's SNR list, so every protocol of a card shares the parameters of one SNR.
    """
    from ..noise import add_noise

    k_p, k_n, k_d = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), snr_index), 3)
    truth = {k: np.asarray(v) for k, v in prior.sample(k_p, n).items()}
    sim = _batched_signal(model)
    y = np.concatenate([
        np.asarray(add_noise(jax.random.fold_in(k_n, j), sim(acquisition, {k: jnp.asarray(v[j:j + 5000])
                                                                            for k, v in truth.items()}),
                             snr, kind="rician", s0=1.0), np.float32) for j in range(0, n, 5000)])
    return truth, y, k_d


def _voxel_frames(net, signals, acquisition):
    """(n, 3, 3) the DTI frames the network's θ space uses for these voxels."""
    from ..networks.features import protocol_features
    from ..pretrained import _build_batch
    from .engine import _float32_acquisition

    acq = _float32_acquisition(acquisition)
    b0 = jnp.asarray(np.asarray(acquisition.bvalues) <= 0.05)
    batch = _build_batch(jnp.asarray(signals, jnp.float32), protocol_features(acq), b0, acq.bvalues, acq.directions)
    return np.asarray(batch["frame"])


def _corrected_theta_draws(net, signals, acquisition, truth, n_total: int, n_out: int, key, snr: float):
    """Equal-weight draws of the importance-corrected posterior: (draws (n, n_out, D), truths, k̂ (n,), n_unique (n,)).

    `n_total` draws of `network_importance`, systematically resampled to `n_out`. Where the largest weight
    exceeds 1/n_out some draws repeat (n_unique < n_out).
    """
    from ..diagnostics.importance import pareto_khat
    from .importance_correction import systematic_resample, truncated_weights

    k_d, k_r = jax.random.split(key)
    theta, truths, lw = _theta_draws(net, signals, acquisition, truth, n_total, k_d, snr, adaptive=True)
    w = truncated_weights(jnp.asarray(lw))
    idx = np.asarray(systematic_resample(k_r, w, n_out))
    unique = np.array([np.unique(r).size for r in idx])
    return np.take_along_axis(theta, idx[:, :, None], axis=1), truths, pareto_khat(lw), unique


def c2st_against_nuts(net, acquisition, signals, init: dict, snr: float, *, n_draws: int = 1000, seed: int = 0,
                      corrected: bool = False) -> dict:
    """Per-voxel C2ST accuracy of the network's posterior against NUTS (module docstring), and NUTS's R̂.

    Each NUTS chain starts at its own draw of the network's posterior (not the draws the C2ST tests): inside the
    posterior's bulk and spread over it, where an NLLS start of a degenerate fit (SANDI at SNR 20: a fraction at
    0, a diffusivity on its bound) sits on the box's edge, far out in the chart. The reference stays the
    likelihood's: the chains forget their starts in the warm-up, and split-R̂ across chains started apart is
    reported (a network posterior too narrow to spread the starts would make R̂ less sensitive, not the
    stationary distribution different).

    Args:
        signals: (V, M) noisy normalised signals (S0 = 1) at `snr`. init: NLLS parameters (name → (V,) / (V, 3));
            its axes centre NUTS's chart. n_draws: draws of each posterior per voxel (NUTS: 4 chains × n_draws/4,
            at least `NUTS_DRAWS_PER_CHAIN`).
        corrected: also the importance-corrected posterior ("corrected_accuracies"): 8 × n_draws draws
            of `network_importance`, resampled to n_draws; the distinct draws only enter the test (a
            classifier could learn repeated points), and NUTS is cut to the same number.
    """
    from ..diagnostics.c2st import c2st
    from ..fitting.mcmc import sample_posterior
    from .importance_correction import likelihood_signal

    y = np.asarray(signals)
    # the reference targets what the network is trained for: the signals divided by their own b = 0 mean,
    # S0 unknown (marginalised), as the importance correction does
    b0 = np.asarray(acquisition.bvalues) <= 0.05
    y_norm = y / np.mean(y[:, b0], axis=1, keepdims=True)
    frames = _voxel_frames(net, y, acquisition)
    V = len(y)
    truth = {k: np.asarray(v) for k, v in init.items()}  # unused by the draws; fixes the shapes
    start_theta, _ = _theta_draws(net, y, acquisition, truth, 4, jax.random.PRNGKey(seed + 3), snr)
    starts = net.space.from_theta(jnp.asarray(start_theta),
                                  jnp.asarray(np.broadcast_to(frames[:, None], (V, 4, 3, 3)), jnp.float32))
    per_chain = max(n_draws // 4, NUTS_DRAWS_PER_CHAIN)
    ref = sample_posterior(net.space.model, acquisition, y_norm, sigma=1.0 / snr, noise="rician", init=init,
                           starts={k: np.asarray(v) for k, v in starts.items()}, n_chains=4, num_warmup=NUTS_WARMUP,
                           num_samples=per_chain, key=jax.random.key(seed), s0_marginal=True,
                           signal_fn=likelihood_signal(net.space.model, acquisition),
                           target_acceptance=NUTS_TARGET_ACCEPTANCE)
    # thinned to n_draws over all chains (the chains are stored one after the other)
    keep = np.linspace(0, 4 * per_chain - 1, n_draws).round().astype(int)
    n = len(keep)
    frame_rep = jnp.asarray(np.broadcast_to(frames[:, None], (V, n, 3, 3)), jnp.float32)
    ref_theta = np.asarray(net.space.to_theta({k: jnp.asarray(v[:, keep], jnp.float32) for k, v in ref.params.items()},
                                              frame_rep))
    net_theta, _ = _theta_draws(net, y, acquisition, truth, n_draws, jax.random.PRNGKey(seed + 1), snr)
    acc = np.array([c2st(net_theta[v], ref_theta[v], seed=seed + v) for v in range(V)])
    out = {}
    if corrected:
        cor_theta, _, _, _ = _corrected_theta_draws(net, y, acquisition, truth, 8 * n_draws, n_draws,
                                                    jax.random.PRNGKey(seed + 2), snr)
        distinct = [np.unique(cor_theta[v], axis=0) for v in range(V)]
        out["corrected_accuracies"] = np.array([c2st(distinct[v], ref_theta[v], seed=seed + v) for v in range(V)])
        out["corrected_distinct_draws_median"] = float(np.median([len(d) for d in distinct]))
    return {"accuracies": acc, "nuts_rhat_max": float(np.nanmax(ref.rhat)), "nuts_ess_min": float(np.nanmin(ref.ess)),
            "nuts_draws_per_chain": per_chain, "nuts_divergences": int(np.sum(ref.divergences)), "n_draws": n_draws,
            **out}


def _card_c2st(net, acquisition, y, fit, ok, voxels: int, snr: float, seed: int, corrected: bool) -> dict:
    """`c2st_against_nuts` on the first `voxels` test voxels that NLLS fitted (`ok`), their fits centring NUTS's axes."""
    t0 = time.perf_counter()
    idx = np.flatnonzero(ok)[:voxels]
    out = c2st_against_nuts(net, acquisition, y[idx], {k: np.asarray(v)[idx] for k, v in fit.params.items()}, snr,
                            seed=seed, corrected=corrected)
    out["seconds"] = time.perf_counter() - t0
    return out


def _nlls_ok(fit, n: int) -> np.ndarray:
    """(n,) bool: NLLS converged with finite parameters."""
    return fit.fitted & np.all([np.all(np.isfinite(np.reshape(v, (n, -1))), axis=1) for v in fit.params.values()], axis=0)


def add_c2st(net, acquisition, evaluation: dict, snr: float, *, voxels: int = 20, snrs=(10.0, 20.0, 50.0)) -> dict:
    """Add the C2ST against NUTS to one SNR of an existing `evaluate_checkpoint` result (a model_card.json
    protocol entry), without re-measuring the rest: the same seeded test set, the same voxels and NUTS
    starts as `evaluate_checkpoint(c2st_voxels=voxels)`; the reports' gates are updated. Returns `evaluation`.
    """
    from ..diagnostics.report import c2st_report, to_json
    from ..fitting import fit_nlls
    from .test_sets import test_set_prior

    i, seed, n_sims = list(snrs).index(snr), evaluation["seed"], evaluation["n_sims"]
    test_set = "uniform" if evaluation["test_set"].startswith("uniform") else "in-vivo-like"
    _, y_cal, _ = card_test_set(test_set_prior(net.space, test_set), net.space.model, acquisition, snr, i,
                                evaluation["calibration_sims"], seed)
    y = y_cal[:n_sims]
    fit = fit_nlls(net.space.model, acquisition, y, progress=False)
    report = evaluation["by_snr"][f"{snr:g}"]
    res = _card_c2st(net, acquisition, y, fit, _nlls_ok(fit, n_sims), voxels, snr, seed + i, "corrected" in report)
    for rep, key in ((report, "accuracies"), (report.get("corrected"), "corrected_accuracies")):
        if rep is None:
            continue
        rep["c2st"] = to_json(c2st_report(res[key]))
        rep["gated"] = [g for g in rep["gated"] if g != "c2st"] + ["c2st"]
        rep["pass"] = all(rep[g]["pass"] for g in rep["gated"])
    report["c2st"].update({k: res[k] for k in ("nuts_rhat_max", "nuts_ess_min", "nuts_draws_per_chain",
                                                "nuts_divergences", "seconds")})
    if "corrected" in report:
        report["corrected"]["c2st"]["distinct_draws_median"] = res["corrected_distinct_draws_median"]
    return evaluation


def evaluate_checkpoint(net, acquisition, *, snrs=(10.0, 20.0, 50.0), n_sims: int = 1000, n_draws: int = 100,
                        seed: int = 0, progress: bool = False, c2st_voxels: int = 0, c2st_snr: float = 20.0,
                        corrected_draws: int = 200, calibration_sims: int | None = None,
                        test_set: str = "uniform", min_ess: float = 0.0, only_snrs=None) -> dict:
    """The measured diagnostics of a `PretrainedPosterior` on `acquisition` (module docstring).

    n_sims: test voxels per SNR for recovery against NLLS, the width ratio and k̂.
    calibration_sims: test voxels per SNR for SBC, coverage and TARP (default n_sims; the first n_sims of
        them are the recovery set). The coverage and TARP gates need ≈ 5000–10000 to pass a correct
        posterior reliably (`diagnostics.coverage`).
    test_set: "uniform" (the training prior) or "in-vivo-like" (`inference.test_sets`).
    c2st_voxels: voxels compared with NUTS by C2ST at the SNR `c2st_snr` (one of `snrs`; 0: skip; the model
        card uses 20: NUTS is the slow part).
    corrected_draws: draws of the importance-corrected posterior per voxel (as `sbi-dmri infer --samples`),
        evaluated beside the network's own under "corrected": its SBC, coverage and TARP take the weighted
        draws themselves (`diagnostics.sbc.weighted_randomised_pit`), its recovery the weighted mean of
        `infer_voxels`; 0: skip.
    min_ess: the corrected posterior's redraw threshold (`infer_voxels(min_ess=...)`), in both its passes.
    only_snrs: evaluate only these of `snrs` (each keeps its own test set, seeded by its place in `snrs`).
    """
    from ..diagnostics.report import evaluate_gates
    from ..fitting import fit_nlls
    from ..training.evaluation import theta_names
    from .engine import KHAT_FLAG, infer_voxels
    from .test_sets import test_set_prior

    model, prior = net.space.model, test_set_prior(net.space, test_set)
    n_cal = max(int(calibration_sims or n_sims), n_sims)
    out = {"protocol_measurements": int(acquisition.n_measurements), "n_sims": n_sims, "n_draws": n_draws,
           "calibration_sims": n_cal, "seed": seed,
           "test_set": "uniform (the training prior)" if test_set == "uniform" else
           "in-vivo-like (inference.test_sets.IN_VIVO_RANGES)", "by_snr": {}}
    for i, snr in enumerate(snrs):
        if only_snrs is not None and snr not in only_snrs:
            continue
        truth_cal, y_cal, k_d = card_test_set(prior, model, acquisition, snr, i, n_cal, seed)
        truth = {k: v[:n_sims] for k, v in truth_cal.items()}
        y = y_cal[:n_sims]
        t0 = time.perf_counter()
        # an SNR-conditioned network is given the test set's SNR (known here, as the noise level of a scan is)
        res = infer_voxels(net, y, acquisition, samples=n_draws, seed=seed + i, progress=progress, snr=snr,
                           correct=False)
        t_net = time.perf_counter() - t0
        if corrected_draws:
            t0 = time.perf_counter()
            res_c = infer_voxels(net, y, acquisition, samples=corrected_draws, seed=seed + i, progress=progress,
                                 snr=snr, correct=True, chunk_size=max(64, DRAWS_PER_CALL // corrected_draws),
                                 min_ess=min_ess)
            t_cor = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = fit_nlls(model, acquisition, y, progress=progress)
        t_fit = time.perf_counter() - t0
        ok = _nlls_ok(fit, n_sims)
        samples, truths = _theta_draws(net, y_cal, acquisition, truth_cal, n_draws, k_d, snr)
        c2st_result = None
        if c2st_voxels and snr == c2st_snr:
            c2st_result = _card_c2st(net, acquisition, y, fit, ok, c2st_voxels, snr, seed + i, bool(corrected_draws))
        def gates(draws, label, maps, c2st_key, weights=None):
            # one posterior's gates on this test set: calibration on (weighted) `draws`, recovery of `maps.mean`
            return evaluate_gates(
                draws, truths, theta_names(net.space), label=f"uniform, SNR {snr:g}{label}", seed=seed,
                weights=weights,
                estimates={k: v[ok] for k, v in maps.mean.items()},
                recovery_truths={k: v[ok] for k, v in truth.items()},
                reference_estimates={k: np.asarray(v)[ok] for k, v in fit.params.items()},
                khat=maps.khat[np.isfinite(maps.khat)],
                c2st_accuracies=None if c2st_result is None else c2st_result[c2st_key],
            )

        report = gates(samples, "", res, "accuracies")
        if c2st_result is not None:
            report["c2st"].update({k: c2st_result[k] for k in ("nuts_rhat_max", "nuts_ess_min", "nuts_draws_per_chain",
                                                                 "nuts_divergences", "seconds")})
        report["width_ratio_median"] = {k: float(np.median(v)) for k, v in res.width_ratio.items()}
        report["nlls_fitted_fraction"] = float(np.mean(ok))
        report["seconds"] = {"network_posterior_and_trust": t_net, "nlls": t_fit}
        if corrected_draws:
            from .importance_correction import corrected_weights

            t0 = time.perf_counter()
            c_samples, _, c_lw, c_counts, c_redrawn = _redrawn_theta_draws(
                net, y_cal, acquisition, truth_cal, corrected_draws, jax.random.fold_in(k_d, 1), snr, min_ess)
            # as infer_voxels weighs them
            c_w = np.asarray(corrected_weights(jnp.asarray(c_lw), jnp.asarray(c_counts)), np.float64)
            dead = np.all(c_lw == -np.inf, axis=1)
            t_cal = time.perf_counter() - t0
            cor = gates(c_samples, ", importance-corrected", res_c, "corrected_accuracies", weights=c_w)
            if c2st_result is not None:
                cor["c2st"]["distinct_draws_median"] = c2st_result["corrected_distinct_draws_median"]
            cor["width_ratio_median"] = {k: float(np.median(v)) for k, v in res_c.width_ratio.items()}
            cor["draws"] = corrected_draws
            cor["min_ess"] = min_ess
            cor["redrawn_fraction"] = float(np.mean(c_redrawn))
            cor["effective_draws_median"] = float(np.median(1.0 / np.sum(c_w**2, axis=1)))
            cor["dead_voxels"] = int(np.sum(dead))
            cor["seconds"] = t_cor
            cor["calibration_seconds"] = t_cal
            report["corrected"] = cor
        report["khat_flag"] = KHAT_FLAG
        out["by_snr"][f"{snr:g}"] = report
    return out


def _fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)


def format_model_card(meta: dict, evaluation: dict, training: dict) -> str:
    """Markdown model card from the checkpoint's meta, the evaluation and training facts.

    `evaluation` is {"by_protocol": {protocol name: `evaluate_checkpoint` result}} (one protocol of the
    training family each), or a single `evaluate_checkpoint` result with its "protocol_name".
    """
    names = list(meta["parameter_names"])
    per_protocol = evaluation.get("by_protocol") or {evaluation.get("protocol_name", "protocol"): evaluation}
    first = next(iter(per_protocol.values()))
    lines = [f"# Model card: `{meta['model']}` amortized posterior", "",
             f"Parameters: {', '.join(names)}. Package version {meta.get('package_version')}, checkpoint step "
             f"{meta.get('step')}, checkpoint format {meta.get('format')}.", "",
             "## Training", ""]
    lines += [f"- {k}: {v}" for k, v in training.items()]
    p = meta["protocol"]
    lines += [f"- protocol family: {json.dumps(p)}", f"- noise: {json.dumps(meta.get('noise'))}", "",
              "## Measured diagnostics", "",
              "Test sets: uniform (the training prior); rows marked in-vivo-like draw the parameters on in-vivo "
              "ranges instead (`sbi_dmri.inference.test_sets`). SBC and TARP assume truths drawn from the "
              "posterior's own prior, so on the in-vivo-like rows they are not gates: a posterior calibrated under "
              "the uniform prior is expected to fail them there (the bias/precision trade-off of Gyori et al., "
              "MRM 87:932, 2022); read those rows' coverage and recovery. "
              + _calibration_sizes(per_protocol) + " for SBC, coverage and TARP "
              f"(the first {first['n_sims']} of them for recovery against NLLS, "
              f"the width ratio and k̂), {first['n_draws']} draws of the network's posterior each, seed {first['seed']}, on "
              + ", ".join(f"{name} ({ev['protocol_measurements']} measurements)" for name, ev in per_protocol.items())
              + ", each a member of the training family.",
              "Gates from EVALUATION.md via `sbi_dmri.diagnostics.evaluate_gates`. Below ≈ 5000 simulations the coverage "
              "and TARP gates fail a correct posterior often (see the diagnostics' docstrings); read the numbers.", "",
              "| protocol | SNR | SBC (KS, Bonferroni) | coverage gate | TARP ATC | recovery vs NLLS gate | k̂ median | flagged (k̂ > 0.7) |",
              "|---|---|---|---|---|---|---|---|"]
    for pname, ev in per_protocol.items():
        for snr, r in ev["by_snr"].items():
            k = r.get("pareto_khat", {})
            lines.append(f"| {pname} | {snr} | {'pass' if r['sbc']['pass'] else 'FAIL'} | "
                         f"{'pass' if r['coverage']['pass'] else 'FAIL'} | "
                         f"{r['tarp']['atc']:+.3f} ({'pass' if r['tarp']['pass'] else 'FAIL'}) | "
                         f"{'pass' if r['recovery']['pass'] else 'FAIL'} | {_fmt(k.get('median'))} | "
                         f"{100 * k.get('fraction_flagged', float('nan')):.1f} % |")
    levels = next(iter(first["by_snr"].values()))["coverage"]["levels"]
    lines += ["", "### Expected coverage of central intervals (per θ dimension)", "",
              "| protocol | SNR | dimension | " + " | ".join(f"{lv:.0%}" for lv in levels) + " |",
              "|---|---|---|" + "---|" * len(levels)]
    for pname, ev in per_protocol.items():
        for snr, r in ev["by_snr"].items():
            for dim, cov in r["coverage"]["coverage"].items():
                lines.append(f"| {pname} | {snr} | {dim} | " + " | ".join(f"{c:.3f}" for c in cov) + " |")
    lines += ["", "### Recovery: posterior mean vs NLLS on the same noisy voxels", "",
              "RMSE and bias in the parameter's unit (µm²/ms, fraction); orientation: angular error in degrees.", "",
              "| protocol | SNR | parameter | network RMSE | NLLS RMSE | ratio | network bias | NLLS bias |",
              "|---|---|---|---|---|---|---|---|"]
    for pname, ev in per_protocol.items():
        for snr, r in ev["by_snr"].items():
            for name, row in r["recovery"]["table"].items():
                lines.append(f"| {pname} | {snr} | {name} | {row['rmse']:.4f} | {row['reference_rmse']:.4f} | "
                             f"{row['rmse_ratio']:.2f} | {_fmt(row['bias'], '+.4f')} | {_fmt(row['reference_bias'], '+.4f')} |")
    if any("c2st" in r for ev in per_protocol.values() for r in ev["by_snr"].values()):
        lines += ["", "### C2ST against NUTS (per-voxel classifier accuracy; 0.5 = same posterior, gate ≤ 0.60)", "",
                  "| protocol | SNR | voxels | median | max | voxels > 0.60 | NUTS max R̂ | NUTS min ESS | gate |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for pname, ev in per_protocol.items():
            for snr, r in ev["by_snr"].items():
                c = r.get("c2st")
                if c:
                    acc = np.asarray(c["accuracies"])
                    lines.append(f"| {pname} | {snr} | {acc.size} | {np.median(acc):.3f} | {acc.max():.3f} | "
                                 f"{int(np.sum(acc > 0.6))} | {c.get('nuts_rhat_max', float('nan')):.3f} | "
                                 f"{_fmt(c.get('nuts_ess_min'), '.0f')} | {'pass' if c['pass'] else 'FAIL'} |")
    lines += ["", "### Posterior-to-prior width ratio (median; sd ratio, orientation: RMS-angle ratio)", "",
              "| protocol | SNR | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for pname, ev in per_protocol.items():
        for snr, r in ev["by_snr"].items():
            lines.append(f"| {pname} | {snr} | " + " | ".join(f"{r['width_ratio_median'][n]:.3f}" for n in names) + " |")
    lines += _corrected_section(per_protocol, levels)
    d = meta.get("diagnostics")
    if d:
        lines += ["", "### Diagnostics at the end of training (training family, random protocols, θ space)", "",
                  f"{d.get('n_sims')} simulations × {d.get('n_draws')} draws: coverage "
                  f"{'pass' if d.get('coverage_pass') else 'FAIL'}, SBC {'pass' if d.get('sbc_pass') else 'FAIL'}, "
                  f"TARP ATC {d.get('tarp_atc', float('nan')):+.3f} ({'pass' if d.get('tarp_pass') else 'FAIL'})."]
    lines += ["", "Full numbers: `model_card.json`.", ""]
    return "\n".join(lines)


def _calibration_sizes(per_protocol: dict) -> str:
    """"N simulations per SNR and protocol", or per protocol where the test sets differ in size."""
    sizes = {name: ev.get("calibration_sims", ev["n_sims"]) for name, ev in per_protocol.items()}
    if len(set(sizes.values())) == 1:
        return f"{next(iter(sizes.values()))} simulations per SNR and protocol"
    return "simulations per SNR: " + ", ".join(f"{n} ({name})" for name, n in sizes.items())


def _corrected_section(per_protocol: dict, levels) -> list[str]:
    """Model-card lines for the importance-corrected posterior (empty when it was not evaluated)."""
    rows = [(p, snr, r, r["corrected"]) for p, ev in per_protocol.items() for snr, r in ev["by_snr"].items()
            if "corrected" in r]
    if not rows:
        return []
    min_ess = sorted({c.get("min_ess", 0.0) for *_, c in rows})
    redraw = ("" if min_ess == [0.0] else
              f" Voxels with fewer effective draws than min_ess ({', '.join(f'{m:g}' for m in min_ess)}) are drawn again "
              "with 4 × the draws (`sbi-dmri infer --min-ess`); the table gives the fraction redrawn.")
    lines = ["", "## Importance-corrected posterior (what `sbi-dmri infer` reports with these --samples and --min-ess)", "",
             "The network's draws, half of them replaced by draws of a Gaussian adapted to their importance weights, "
             "all weighted by the analytic Rician likelihood with S0 marginalised "
             f"(`sbi_dmri.inference.importance_correction`).{redraw} SBC, coverage and TARP take the weighted draws themselves "
             "(the weighted CDF at the truth, jittered by the effective sample size: "
             "`sbi_dmri.diagnostics.sbc.weighted_randomised_pit`); the mean is the weighted mean.", "",
             "| protocol | SNR | draws (effective, median) | min_ess (redrawn) | SBC | coverage gate | TARP ATC | k̂ median | flagged (k̂ > 0.7) | C2ST vs NUTS median (gate) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p, snr, _, c in rows:
        k = c.get("pareto_khat", {})
        c2 = c.get("c2st")
        c2s = "—" if not c2 else f"{np.median(np.asarray(c2['accuracies'])):.3f} ({'pass' if c2['pass'] else 'FAIL'})"
        eff = c.get("effective_draws_median")
        me = c.get("min_ess", 0.0)
        red = "—" if not me else f"{me:g} ({100 * c.get('redrawn_fraction', float('nan')):.0f} %)"
        lines.append(f"| {p} | {snr} | {c['draws']}{'' if eff is None else f' ({eff:.0f})'} | {red} | {'pass' if c['sbc']['pass'] else 'FAIL'} | "
                     f"{'pass' if c['coverage']['pass'] else 'FAIL'} | {c['tarp']['atc']:+.3f} "
                     f"({'pass' if c['tarp']['pass'] else 'FAIL'}) | {_fmt(k.get('median'))} | "
                     f"{100 * k.get('fraction_flagged', float('nan')):.1f} % | {c2s} |")
    lines += ["", "Recovery on the same voxels (RMSE; orientation in degrees):", "",
              "| protocol | SNR | parameter | corrected RMSE | NLLS RMSE | ratio | network-only ratio |", "|---|---|---|---|---|---|---|"]
    for p, snr, r, c in rows:
        for name, row in c["recovery"]["table"].items():
            lines.append(f"| {p} | {snr} | {name} | {row['rmse']:.4f} | {row['reference_rmse']:.4f} | "
                         f"{row['rmse_ratio']:.2f} | {r['recovery']['table'][name]['rmse_ratio']:.2f} |")
    lines += ["", "Expected coverage of central intervals (per θ dimension):", "",
              "| protocol | SNR | dimension | " + " | ".join(f"{lv:.0%}" for lv in levels) + " |",
              "|---|---|---|" + "---|" * len(levels)]
    for p, snr, _, c in rows:
        for dim, cov in c["coverage"]["coverage"].items():
            lines.append(f"| {p} | {snr} | {dim} | " + " | ".join(f"{x:.3f}" for x in cov) + " |")
    return lines


def write_model_card(folder: str, evaluation: dict, training: dict) -> tuple[str, str]:
    """Write `MODEL_CARD.md` and `model_card.json` into the step folder `folder`."""
    import os

    from ..diagnostics.report import to_json
    from ..training.checkpoint import read_meta

    meta = read_meta(folder)
    card = {"model": meta["model"], "parameters": meta["parameter_names"], "package_version": meta.get("package_version"),
            "step": meta.get("step"), "training": training, "evaluation": to_json(evaluation),
            "training_diagnostics": meta.get("diagnostics")}
    paths = os.path.join(folder, "model_card.json"), os.path.join(folder, "MODEL_CARD.md")
    with open(paths[0], "w") as f:
        json.dump(card, f, indent=1)
    with open(paths[1], "w") as f:
        f.write(format_model_card(meta, evaluation, training))
    return paths


def main(argv=None) -> None:
    import argparse
    import os

    from .test_sets import TEST_SETS
    from ..pretrained import load_pretrained
    from ..protocols import load_protocol

    ap = argparse.ArgumentParser(description="measure a checkpoint and write its model card")
    ap.add_argument("folder", help="checkpoint step folder (e.g. checkpoints/ball_stick)")
    ap.add_argument("--protocol", nargs="*", default=["hcp_3shell"],
                    help="shipped protocols of the family to test on (each is a separate test set)")
    ap.add_argument("--n-sims", type=int, default=1000)
    ap.add_argument("--n-draws", type=int, default=100)
    ap.add_argument("--calibration-sims", type=int, default=5000,
                    help="simulations per SNR for SBC, coverage and TARP (the first --n-sims also for recovery)")
    ap.add_argument("--c2st-voxels", type=int, default=20,
                    help="voxels compared with NUTS at SNR 20 on the first protocol (0: skip; NUTS is the slow part)")
    ap.add_argument("--corrected-draws", type=int, default=200,
                    help="draws of the importance-corrected posterior per voxel (0: evaluate the network alone)")
    ap.add_argument("--training", default="{}", help="JSON dict of training facts (steps, wall time, command)")
    ap.add_argument("--invivo-protocol", nargs="*", default=["hcp_3shell"],
                    help="protocols also evaluated on the in-vivo-like test set (none: skip)")
    ap.add_argument("--c2st-on", choices=TEST_SETS, default="uniform",
                    help="test set whose first protocol gets the C2ST against NUTS")
    ap.add_argument("--merge", action="store_true",
                    help="keep the entries of the existing model_card.json that this run does not re-evaluate")
    ap.add_argument("--min-ess", type=float, default=0.0,
                    help="redraw threshold of the corrected posterior (as `sbi-dmri infer --min-ess`; 0: never)")
    ap.add_argument("--add-c2st", action="store_true",
                    help="only add the C2ST against NUTS (--c2st-voxels, SNR 20, the first --c2st-on protocol) to the "
                         "existing model_card.json, keeping every other number")
    ap.add_argument("--snr", type=float, nargs="*", default=None,
                    help="evaluate only these SNRs of 10, 20, 50 (with --merge the others keep their entries)")
    args = ap.parse_args(argv)
    net = load_pretrained(args.folder)
    runs = [(name, "uniform") for name in args.protocol] + [(name, "in-vivo-like") for name in args.invivo_protocol]
    by_protocol = {}
    if args.merge:
        with open(os.path.join(net.source, "model_card.json")) as f:
            by_protocol = json.load(f)["evaluation"]["by_protocol"]
    first_c2st = next((r for r in runs if r[1] == args.c2st_on), None)
    if args.add_c2st:
        with open(os.path.join(net.source, "model_card.json")) as f:
            card = json.load(f)
        name, test_set = first_c2st
        label = name if test_set == "uniform" else f"{name}, in-vivo-like"
        by_protocol = card["evaluation"]["by_protocol"]
        add_c2st(net, load_protocol(name), by_protocol[label], 20.0, voxels=args.c2st_voxels)
        training = {**card["training"], **json.loads(args.training)}
        print("\n".join(write_model_card(net.source, {"by_protocol": by_protocol}, training)))
        return
    for name, test_set in runs:
        acq = load_protocol(name)
        net.protocol.check(acq)  # a test protocol must belong to the training family
        label = name if test_set == "uniform" else f"{name}, in-vivo-like"
        print(f"evaluating on {label} ...", flush=True)
        ev = evaluate_checkpoint(net, acq, n_sims=args.n_sims, n_draws=args.n_draws,
                                 c2st_voxels=args.c2st_voxels if (name, test_set) == first_c2st else 0,
                                 corrected_draws=args.corrected_draws, calibration_sims=args.calibration_sims,
                                 test_set=test_set, min_ess=args.min_ess, only_snrs=args.snr)
        if args.snr is not None and label in by_protocol:  # merge per SNR
            ev["by_snr"] = {**by_protocol[label]["by_snr"], **ev["by_snr"]}
            ev["by_snr"] = {k: ev["by_snr"][k] for k in sorted(ev["by_snr"], key=float)}
        by_protocol[label] = ev
    print("\n".join(write_model_card(net.source, {"by_protocol": by_protocol}, json.loads(args.training))))


if __name__ == "__main__":
    main()
