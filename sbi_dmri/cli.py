"""`sbi-dmri <verb>`: the command line. Thin: every verb parses arguments and calls one library function.

Pattern for adding a verb: write `_add_<verb>(sub)` that creates the subparser and sets
`func=_run_<verb>`, write `_run_<verb>(args)` that imports the library lazily (start-up stays fast)
and calls it, and append `_add_<verb>` to `_VERBS`. User errors (ValueError, KeyError,
FileNotFoundError) print one line `sbi-dmri: error: ...` and exit with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys


# ---------------------------------------------------------------------- models
def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models with parameters, units and bounds")
    p.add_argument("names", nargs="*", help="only these models")
    p.add_argument("--kind", choices=["compartment", "tissue"], help="only this kind")
    p.set_defaults(func=_run_models)


def _run_models(args):
    from . import models

    names = args.names or models.available(args.kind)
    for name in names:
        print(models.get(name).describe())


# ---------------------------------------------------------------------- simulate
def _add_simulate(sub):
    p = sub.add_parser(
        "simulate",
        help="simulate signals of a model on a protocol",
        description="Simulate E = S/S0 of a model for given parameter values on a protocol "
        "(a shipped one with --protocol, or FSL files with --bval/--bvec/--delta/--Delta).",
    )
    p.add_argument("--model", required=True, help="registered model name (see `sbi-dmri models`)")
    _add_protocol_args(p)
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="parameter value in the model's units; orientation as x,y,z (repeat for each parameter)",
    )
    p.add_argument("--snr", type=float, default=None, help="add noise with SNR = S0/σ (default: noise-free)")
    p.add_argument("--noise", choices=["rician", "gaussian"], default="rician")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write signals here (one per line, .txt) instead of printing a table")
    p.set_defaults(func=_run_simulate)


def _add_protocol_args(p):
    p.add_argument("--protocol", help="shipped protocol name (hcp_3shell, clinical_2shell, hardi_2shell, sandi_5shell)")
    p.add_argument("--bval", help="FSL .bval file (s/mm²)")
    p.add_argument("--bvec", help="FSL .bvec file (3×N or N×3)")
    p.add_argument("--delta", type=float, help="pulse duration δ in ms")
    p.add_argument("--Delta", type=float, help="pulse separation Δ in ms")
    p.add_argument("--TE", type=float, default=None, help="echo time in ms (optional)")


def _acquisition_from_args(args):
    from .acquisition import Acquisition
    from .protocols import load_protocol

    if args.protocol:
        if args.bval or args.bvec:
            raise ValueError("give either --protocol or --bval/--bvec, not both")
        return load_protocol(args.protocol)
    missing = [f"--{k}" for k in ("bval", "bvec", "delta", "Delta") if getattr(args, k) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or use --protocol NAME)")
    return Acquisition.from_fsl(args.bval, args.bvec, delta=args.delta, Delta=args.Delta, TE=args.TE)


def _parse_params(items: list[str]) -> dict[str, list[float]]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not a number (or x,y,z)") from None
    return out


def _run_simulate(args):
    import numpy as np

    from . import models
    from .simulators.analytic import simulate_signals

    model = models.get(args.model)
    acq = _acquisition_from_args(args)
    params = _parse_params(args.param)
    missing = [n for n in model.parameter_names if n not in params]
    if missing:
        raise ValueError(f"model {args.model} needs --param for: {', '.join(missing)} (see `sbi-dmri models {args.model}`)")
    signals = simulate_signals(model, acq, params, snr=args.snr, noise=args.noise, seed=args.seed)[0]
    if args.out:
        np.savetxt(args.out, signals, fmt="%.8g")
        print(f"wrote {len(signals)} signals to {args.out}")
        return
    print(f"# {args.model} on {acq}")
    print(f"# {'b (ms/µm²)':>10}  {'gx':>7} {'gy':>7} {'gz':>7}  {'S/S0':>9}")
    for b, g, s in zip(acq.bvalues, acq.directions, signals):
        print(f"  {b:10.3f}  {g[0]:7.4f} {g[1]:7.4f} {g[2]:7.4f}  {s:9.6f}")


# ---------------------------------------------------------------------- train
def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train an amortized posterior from a YAML config (resumes when rerun)",
        description="Train (or resume) the run CONFIG.yaml in --workdir; rerunning the same command after an "
        "interruption resumes from the newest checkpoint.",
    )
    p.add_argument("config", help="training config (YAML), e.g. configs/ball_stick.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config value, e.g. --set training.steps=2000 (repeatable)")
    p.add_argument("--workdir", help="run folder for checkpoints and metrics (default: runs/<config name>)")
    p.set_defaults(func=_run_train)


def _run_train(args):
    import os

    from .training import load_config, train_and_evaluate

    config = load_config(args.config, args.overrides)
    workdir = args.workdir or os.path.join("runs", os.path.splitext(os.path.basename(args.config))[0])
    s = train_and_evaluate(config, workdir)
    print(f"trained {s['steps']} steps in {s['workdir']} (resumed from step {s['resumed_from']}); "
          f"best validation loss {s['best_val_loss']:.4f} at step {s['best_step']}; "
          f"{s['samples_per_second']:,.0f} training samples/s")
    d = s.get("diagnostics") or {}
    if d:
        print(f"calibration on {d['n_sims']} simulations: coverage {'pass' if d['coverage_pass'] else 'FAIL'}, "
              f"SBC {'pass' if d['sbc_pass'] else 'FAIL'}, TARP ATC {d['tarp_atc']:+.3f} "
              f"({'pass' if d['tarp_pass'] else 'FAIL'})")


# ---------------------------------------------------------------------- fit
def _add_fit(sub):
    p = sub.add_parser(
        "fit",
        help="voxelwise NLLS fit of a model to a DWI volume; writes <param>.nii.gz maps",
        description="Fit MODEL voxel by voxel (Optimistix Levenberg-Marquardt, tensor-seeded, brute-force "
        "initialised; Rician likelihood with --noise rician) and write one NIfTI map per parameter "
        "(orientation as a 4D map), plus s0, loss, converged and fitted maps.",
    )
    p.add_argument("--model", required=True, help="registered model name (see `sbi-dmri models`)")
    p.add_argument("--dwi", required=True, help="4D DWI NIfTI")
    p.add_argument("--bval", required=True, help="FSL .bval file (s/mm²)")
    p.add_argument("--bvec", required=True, help="FSL .bvec file (3×N or N×3)")
    p.add_argument("--mask", help="3D mask NIfTI (default: every voxel)")
    p.add_argument("--delta", type=float, required=True, help="pulse duration δ in ms")
    p.add_argument("--Delta", type=float, required=True, help="pulse separation Δ in ms")
    p.add_argument("--out", required=True, help="output folder for the maps")
    p.add_argument("--noise", choices=["gaussian", "rician"], default="gaussian")
    p.add_argument("--sigma", type=float, default=None, help="noise σ in the DWI's units (rician; default: estimated)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="fix a model parameter, e.g. --fix d_iso=3.0 (repeatable)")
    p.set_defaults(func=_run_fit)


def _run_fit(args):
    from .fitting.volume import fit_volume

    fixed = {k: v[0] for k, v in _parse_params(args.fix).items()}
    paths = fit_volume(args.model, args.dwi, args.bval, args.bvec, mask_path=args.mask, delta=args.delta,
                       Delta=args.Delta, out_dir=args.out, noise=args.noise, sigma=args.sigma, model_options=fixed)
    print(f"wrote {len(paths)} maps to {args.out}")


# ---------------------------------------------------------------------- infer
def _add_infer(sub):
    p = sub.add_parser(
        "infer",
        help="posterior maps of a DWI volume with a trained network",
        description="Whole-volume amortized inference: per parameter <p>_mean/_std/_q025/_q975/_width_ratio "
        "maps, plus trust_khat and trust_flag (0 trusted, 1 Pareto k-hat > 0.7, 2 unusable signals), written "
        "atomically into --out.",
    )
    p.add_argument("--model", required=True, help="shipped network name (e.g. ball_stick) or a checkpoint/workdir path")
    p.add_argument("--dwi", required=True, help="4D NIfTI (X, Y, Z, N)")
    p.add_argument("--bval", required=True, help="FSL .bval file (s/mm²)")
    p.add_argument("--bvec", required=True, help="FSL .bvec file")
    p.add_argument("--mask", help="3D NIfTI mask (nonzero = inside); default every voxel")
    p.add_argument("--delta", type=float, required=True, help="pulse duration δ in ms")
    p.add_argument("--Delta", type=float, required=True, help="pulse separation Δ in ms")
    p.add_argument("--TE", type=float, default=None, help="echo time in ms (optional)")
    p.add_argument("--samples", type=int, default=100, help="posterior draws per voxel (0: point estimates only)")
    p.add_argument("--snr", type=float, default=None,
                   help="S0/σ of the scan for SNR-conditioned networks (default: estimated from the b=0 repeats; with one b=0, from DTI/DKI fit residuals, a lower bound)")
    p.add_argument("--chunk-size", type=int, default=2048, help="voxels per compiled batch (bounds memory)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="run even if the protocol is outside the network's training family")
    p.add_argument("--no-correct", dest="correct", action="store_false",
                   help="the network's own posterior, without the importance correction by the analytic likelihood")
    p.add_argument("--refine-steps", type=int, default=None,
                   help="with --samples 0: Gauss-Newton steps from the point head on the analytic likelihood "
                        "(default 2; 0: the network's point head alone)")
    p.add_argument("--min-ess", type=float, default=0.0,
                   help="voxels whose importance-corrected posterior has fewer effective draws than this are drawn "
                        "again with 4x --samples (default 0: never; calibrated intervals at high SNR: --samples 1000 "
                        "--min-ess 300, as the model cards measure)")
    p.add_argument("--out", required=True, help="output folder for the maps")
    p.set_defaults(func=_run_infer)


def _run_infer(args):
    from .inference import infer_volume

    s = infer_volume(args.model, args.dwi, args.bval, args.bvec, mask=args.mask, delta=args.delta, Delta=args.Delta,
                     TE=args.TE, samples=args.samples, out_dir=args.out, force=args.force,
                     chunk_size=args.chunk_size, seed=args.seed, snr=args.snr, correct=args.correct,
                     refine_steps=args.refine_steps, min_ess=args.min_ess)
    for w in s["warnings"]:
        print(f"sbi-dmri: warning: {w}", file=sys.stderr)
    print(f"{s['n_voxels']} voxels, {s['samples']} draws each, in {s['seconds']['inference']:.1f} s; "
          + (f"{s['n_redrawn']} drawn again (fewer than {args.min_ess:g} effective draws); " if s["n_redrawn"] else "")
          + f"{s['n_unreliable']} flagged unreliable (k-hat > {s['khat_threshold']}), {s['n_unusable']} unusable; "
          f"{len(s['files'])} maps in {s['out_dir']}")


# ---------------------------------------------------------------------- demo
def _add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="synthetic phantom → shipped ball_stick network and NLLS → maps, figure and report",
        description="Build the synthetic ball_stick phantom, run the shipped network and NLLS on it, and write "
        "the maps, demo.png and report.md (errors against the truth, timings).",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--quick", action="store_true", help="a smaller phantom and fewer draws (about a minute)")
    p.set_defaults(func=_run_demo)


def _run_demo(args):
    from .demo import run_demo

    s = run_demo(args.out, quick=args.quick)
    print(f"demo written to {s['out_dir']}: {s['report']}, {s['figure']}")


# ---------------------------------------------------------------------- entry point
# ---------------------------------------------------------------------- simulate-library (Monte Carlo)
def _add_simulate_library(sub):
    p = sub.add_parser("simulate-library", help="Monte Carlo signal library (npz shards + manifest, Grain-readable)")
    p.add_argument("--substrate", required=True, choices=["free", "cylinder", "sphere", "planes"])
    _add_protocol_args(p)
    p.add_argument("--range", action="append", default=[], metavar="NAME=LO,HI",
                   help="parameter range, e.g. radius=1,8 (µm) and diffusivity=1,3 (µm²/ms); repeatable")
    p.add_argument("--n-samples", type=int, required=True, help="number of substrates")
    p.add_argument("--n-spins", type=int, default=10000, help="walkers per substrate")
    p.add_argument("--dt", type=float, default=0.05, help="time step in ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=256, help="samples per shard")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_run_simulate_library)


def _run_simulate_library(args):
    from .simulators.montecarlo.library import simulate_library

    ranges = {}
    for name, value in _parse_params(args.range).items():
        if len(value) != 2 or value[0] > value[1]:
            raise ValueError(f"--range {name}: expected LO,HI with LO ≤ HI, got {value}")
        ranges[name] = tuple(value)
    path = simulate_library(args.substrate, _acquisition_from_args(args), ranges, n_samples=args.n_samples,
                            n_spins=args.n_spins, dt=args.dt, seed=args.seed, out_dir=args.out,
                            shard_size=args.shard_size)
    print(f"wrote {path}")


# ---------------------------------------------------------------------- validate (analytic vs Monte Carlo)
def _add_validate(sub):
    p = sub.add_parser("validate", help="check every closed-form kernel against Monte Carlo; write compendium records")
    p.add_argument("--quick", action="store_true", help="small spin counts (under 2 minutes on 2 cores)")
    p.add_argument("--out", default="compendium", help="output directory for JSON records and PNG plots")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_validate)


def _run_validate(args):
    from .validation import validate

    records = validate(quick=args.quick, out_dir=args.out, seed=args.seed)
    for r in records:
        print(f"{'PASS' if r['passed'] else 'FAIL'}  {r['id']}")
    if not all(r["passed"] for r in records):
        raise SystemExit(1)


_VERBS = [_add_models, _add_simulate, _add_train, _add_fit, _add_infer, _add_demo, _add_simulate_library,
          _add_validate]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sbi-dmri",
        description="Amortized simulation-based inference of tissue microstructure from diffusion MRI. "
        "Units: b in s/mm² in FSL files, otherwise ms/µm²; times in ms; lengths in µm.",
    )
    parser.add_argument("--version", action="version", version=f"sbi_dmri {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    sub.required = True
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"sbi-dmri: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("sbi-dmri: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
