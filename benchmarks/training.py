"""Training throughput: simulated samples per second of the jitted train step, and optionally the wall
time for a full run of a config to reach the EVALUATION.md calibration gates.

    python benchmarks/training.py                                  # throughput, configs/ball_stick.yaml
    python benchmarks/training.py --config configs/tiny.yaml --repeats 5
    python benchmarks/training.py --full --workdir /tmp/bs_bench    # + full run and its gates
    python benchmarks/training.py --config configs/ball_stick_3shell.yaml --full --recovery hcp_3shell --workdir runs/bs3
    python benchmarks/training.py --config configs/ball_stick_3shell.yaml --recovery-only --recovery hcp_3shell --workdir runs/bs3

Throughput is measured side by side in one process: simulation alone (prior → protocol → signal →
noise → network batch) and the whole train step (simulation + loss + gradient + update), each the
median over `--repeats` timed windows of `--steps` steps after compilation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sbi_dmri.training.config import load_config  # noqa: E402
from sbi_dmri.training.data import build_simulator, network_batch  # noqa: E402
from sbi_dmri.training.loop import (  # noqa: E402
    build_space, init_state, learning_rate_schedule, make_optimizer, make_train_step, train_and_evaluate,
)
from sbi_dmri.training.sharding import data_mesh, replicate  # noqa: E402


def throughput(config, steps: int, repeats: int) -> dict:
    sim = build_simulator(config)
    space = build_space(sim, key=jax.random.PRNGKey(0), n=config.training.stats_samples)
    B = config.training.batch_size
    mesh = data_mesh()
    graphdef, state = init_state(config, space, sim.protocol.n_max,
                                 make_optimizer(config, learning_rate_schedule(config)), jax.random.PRNGKey(1))
    state = replicate(state, mesh)
    G = config.training.protocols_per_batch
    step_fn = make_train_step(graphdef, sim, space, B, mesh, G)
    sim_fn = jax.jit(lambda k: network_batch(sim.simulate(k, B, G), space))
    key = jax.random.PRNGKey(2)

    t0 = time.perf_counter()
    jax.block_until_ready(sim_fn(key))
    compile_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, m = step_fn(state, key, jnp.asarray(0, jnp.int32))
    jax.block_until_ready(m)
    compile_step = time.perf_counter() - t0

    sim_rates, step_rates = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            out = sim_fn(jax.random.fold_in(key, i))
        jax.block_until_ready(out)
        sim_rates.append(steps * B / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(steps):
            state, m = step_fn(state, key, jnp.asarray(1 + r * steps + i, jnp.int32))
        jax.block_until_ready(m)
        step_rates.append(steps * B / (time.perf_counter() - t0))
    return {
        "batch": B, "M_max": sim.protocol.n_max, "compile_sim_s": compile_sim, "compile_step_s": compile_step,
        "simulation_samples_per_s": statistics.median(sim_rates), "train_samples_per_s": statistics.median(step_rates),
        "train_rates": step_rates, "sim_rates": sim_rates,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/ball_stick.yaml")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also train the config to the end and report its gates")
    ap.add_argument("--workdir", default="/tmp/sbi_dmri_training_benchmark")
    ap.add_argument("--recovery", default=None, help="shipped protocol for the RMSE-vs-NLLS test (with --full)")
    ap.add_argument("--recovery-sims", type=int, default=2000)
    ap.add_argument("--corrected-draws", type=int, default=200,
                    help="draws of the importance-corrected posterior in the recovery test (0: network only)")
    ap.add_argument("--recovery-only", action="store_true",
                    help="skip throughput and training: only the recovery test of the trained --workdir")
    args = ap.parse_args()
    config = load_config(args.config, args.overrides)
    if args.recovery_only:
        return recovery(args, config)
    print(f"# {args.config} {' '.join(args.overrides)} on {jax.devices()[0].platform} x{len(jax.devices())}")
    r = throughput(config, args.steps, args.repeats)
    print("| quantity | value |\n|---|---|")
    print(f"| batch size / padded measurements | {r['batch']} / {r['M_max']} |")
    print(f"| compile: simulation / train step (s) | {r['compile_sim_s']:.1f} / {r['compile_step_s']:.1f} |")
    print(f"| simulation only, samples/s (median of {args.repeats}) | {r['simulation_samples_per_s']:,.0f} |")
    print(f"| train step, samples/s (median of {args.repeats}) | {r['train_samples_per_s']:,.0f} |")
    print(f"| train step windows, samples/s | {', '.join(f'{x:,.0f}' for x in r['train_rates'])} |")
    if args.full:
        t0 = time.perf_counter()
        s = train_and_evaluate(config, args.workdir)
        wall = time.perf_counter() - t0
        d = s["diagnostics"]
        print(f"| full run: {s['steps']} steps, wall (s) | {wall:.0f} (resumed from {s['resumed_from']}) |")
        print(f"| full run: mean train samples/s | {s['samples_per_second']:,.0f} |")
        print(f"| best validation loss (step) | {s['best_val_loss']:.4f} ({s['best_step']}) |")
        if d:
            cov = ", ".join(f"{lvl}: " + " ".join(f"{v:.3f}" for v in row.values()) for lvl, row in d["coverage"].items())
            print(f"| coverage ({', '.join(d['theta_names'])}) | {cov} |")
            print(f"| coverage gate / SBC gate / TARP gate | {d['coverage_pass']} / {d['sbc_pass']} / {d['tarp_pass']} |")
            print(f"| SBC KS p | {', '.join(f'{k} {v:.3g}' for k, v in d['sbc_ks_p'].items())} |")
            print(f"| TARP ATC | {d['tarp_atc']:+.4f} |")
        if args.recovery:
            recovery(args, config)


def recovery(args, config):
    from sbi_dmri.inference.model_card import evaluate_checkpoint
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained(args.workdir)
    snrs = tuple(sorted(set(config.noise.snr)))
    ev = evaluate_checkpoint(net, load_protocol(args.recovery), snrs=snrs, n_sims=args.recovery_sims,
                             corrected_draws=args.corrected_draws)
    print(f"\n## {args.recovery}: {args.recovery_sims} noisy voxels per SNR (prior draws), posterior mean vs NLLS\n")
    print("| posterior | SNR | parameter | RMSE | NLLS RMSE | ratio | coverage / SBC / TARP gates |\n|---|---|---|---|---|---|---|")
    for snr, r0 in ev["by_snr"].items():
        for label, r in (("network", r0), (f"corrected ({r0['corrected']['draws']} draws)", r0.get("corrected"))):
            if r is None:
                continue
            gates = f"{r['coverage']['pass']} / {r['sbc']['pass']} / {r['tarp']['pass']} (ATC {r['tarp']['atc']:+.3f})"
            for name, row in r["recovery"]["table"].items():
                print(f"| {label} | {snr} | {name} | {row['rmse']:.4f} | {row['reference_rmse']:.4f} | "
                      f"{row['rmse_ratio']:.2f} | {gates} |")
    for snr, r0 in ev["by_snr"].items():
        for label, r in (("network", r0), ("corrected", r0.get("corrected"))):
            if r is not None:
                print(f"\ncoverage, {label}, SNR {snr} (levels {r['coverage']['levels']}): "
                      + "; ".join(f"{d} " + " ".join(f"{c:.3f}" for c in cov) for d, cov in r["coverage"]["coverage"].items()))
                print(f"SBC KS p, {label}, SNR {snr}: " + ", ".join(f"{k} {v:.3g}" for k, v in r["sbc"]["p_values"].items()))


if __name__ == "__main__":
    main()
