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
    p.add_argument("--protocol", help="shipped protocol name (hcp_3shell, clinical_2shell, sandi_5shell)")
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
          f"{s['samples_per_second']:,.0f} simulated samples/s")
    d = s.get("diagnostics") or {}
    if d:
        print(f"calibration on {d['n_sims']} simulations: coverage {'pass' if d['coverage_pass'] else 'FAIL'}, "
              f"SBC {'pass' if d['sbc_pass'] else 'FAIL'}, TARP ATC {d['tarp_atc']:+.3f} "
              f"({'pass' if d['tarp_pass'] else 'FAIL'})")


# ---------------------------------------------------------------------- entry point
_VERBS = [_add_models, _add_simulate, _add_train]


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
