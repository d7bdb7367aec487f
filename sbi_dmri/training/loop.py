"""The training loop: `train_and_evaluate(config, workdir) -> summary`.

One jitted `train_step` does everything per step on device: simulate a fresh batch (data.py), map it
to the network batch, compute the loss and its gradient, update the parameters. The step's data key
is `fold_in(data_key, step)`, so the data depend only on (seed, step): a run resumed from a
checkpoint sees exactly the batches the uninterrupted run would have seen, and (deterministic XLA on
CPU) ends with the same weights.

For small per-voxel networks the Python overhead of `nnx.jit` matters, so the loop splits the NNX
objects once (`nnx.split`) and runs a plain `jax.jit` function of the state (flax examples' pattern).
`TRACES` counts how many times `train_step` was traced (a test asserts 1 over many steps).

With `data.kind: library` the batch comes from a Grain iterator over a Monte Carlo library instead
(`library_data.py`): the step takes the clean signals and parameters and adds the noise itself, and
the iterator state is saved in each "latest" checkpoint and restored on resume.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from .. import __version__
from .checkpoint import FORMAT_VERSION, TrainingCheckpoints
from .config import Config, ConfigError, from_dict, load_config, to_dict
from .data import Simulator, build_simulator, network_batch
from .evaluation import posterior_diagnostics
from .protocols import protocol_to_json
from .sharding import check_batch_size, data_mesh, replicate, shard_batch
from .tracking import make_tracker

#: Number of times `train_step` has been traced in this process (Python side effect at trace time).
TRACES = {"train_step": 0}


# ---------------------------------------------------------------------------- building blocks
def build_space(simulator: Simulator, stats: Mapping | None = None, *, key=None, n: int = 20000):
    """The ParameterSpace for the simulator's model and prior; fits normaliser stats when none given.

    The fit runs as one jitted computation (eager prior sampling compiles op by op, which costs
    seconds on a loaded CPU). Axis chart dimensions are exactly N(0, 1) under the uniform axis
    prior (see `networks.parameter_space`), so their statistics are set, not estimated.
    """
    from ..networks.parameter_space import ParameterSpace
    from ..priors import AxisUniform

    prior = simulator.prior
    if stats is None:
        unit = ParameterSpace(simulator.model, prior, stats={"mean": [0.0] * prior.dim, "std": [1.0] * prior.dim})
        z = jax.jit(lambda k: unit.to_theta(prior.sample(k, n), None))(key)
        mean, std = np.asarray(z.mean(axis=0), np.float64), np.asarray(z.std(axis=0), np.float64)
        for f, s in zip(prior.factors, prior.slices):
            if isinstance(f, AxisUniform):
                mean[s], std[s] = 0.0, 1.0
        stats = {"mean": mean.tolist(), "std": std.tolist()}
    return ParameterSpace(simulator.model, prior, stats=stats)


def build_network(config: Config, space, n_measurements: int, *, rngs: nnx.Rngs):
    """The AmortizedPosterior a config describes (θ dimension from the space, M from the protocol)."""
    from ..networks.amortized import AmortizedPosterior
    from ..networks.features import FEATURE_DIM

    net = config.network
    return AmortizedPosterior(
        parameter_dim=space.dim, feature_dim=FEATURE_DIM, encoder=net.encoder,
        n_measurements=n_measurements if net.encoder == "mlp" else None, hidden=net.hidden, depth=net.depth,
        flow=net.flow, flow_layers=net.flow_layers, quantiles=net.quantiles, n_basis=net.n_basis,
        flow_hidden=net.flow_hidden, snr_input=net.snr_input, frame_moments=net.frame_moments,
        frame_input=space.has_orientation, rngs=rngs,
    )


def learning_rate_schedule(config: Config) -> optax.Schedule:
    """Linear warmup from 0 to `lr`, then cosine decay to `final_lr_fraction·lr` (or constant)."""
    o, steps = config.optimizer, config.training.steps
    if o.warmup_steps >= steps:
        raise ConfigError("optimizer.warmup_steps", f"{o.warmup_steps} must be < training.steps = {steps}")
    if o.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, o.lr, max(o.warmup_steps, 1), steps, end_value=o.lr * o.final_lr_fraction
        )
    warm = optax.linear_schedule(0.0, o.lr, max(o.warmup_steps, 1))
    return optax.join_schedules([warm, optax.constant_schedule(o.lr)], [max(o.warmup_steps, 1)])


def make_optimizer(config: Config, schedule: optax.Schedule) -> optax.GradientTransformation:
    o = config.optimizer
    opt = optax.adamw(schedule, weight_decay=o.weight_decay) if o.name == "adamw" else optax.adam(schedule)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), opt) if o.grad_clip > 0 else opt


def init_state(config: Config, space, n_measurements: int, tx: optax.GradientTransformation, key):
    """(graphdef, state) of the pair (network, optimizer), initialised in ONE jitted call.

    Eager NNX initialisation compiles every small op separately (≈100 compilations); under `jit`
    it is one.
    """

    def make(k):
        model = build_network(config, space, n_measurements, rngs=nnx.Rngs(k))
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    graphdef, _ = nnx.split(nnx.eval_shape(lambda: make(key)))
    state = jax.jit(lambda k: nnx.split(make(k))[1])(key)
    return graphdef, state


def make_train_step(graphdef, simulator: Simulator, space, batch_size: int, mesh, protocols_per_batch: int = 0):
    """`train_step(state, data_key, step) -> (state, metrics)`, jitted; `state` is nnx.split((net, opt))[1].

    protocols_per_batch: G > 0 draws G protocols per batch, each shared by batch_size/G voxels; 0, one each.
    """

    def train_step(state, data_key, step):
        TRACES["train_step"] += 1
        model, optimizer = nnx.merge(graphdef, state)
        sim = simulator.simulate(jax.random.fold_in(data_key, step), batch_size, protocols_per_batch)
        batch = shard_batch(network_batch(sim, space), mesh, batch_size)

        def loss_fn(m):
            return m.loss(batch)

        (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
        return nnx.state((model, optimizer)), metrics

    return jax.jit(train_step, donate_argnums=0)


def make_library_train_step(graphdef, simulator, space, batch_size: int, mesh, protocols_per_batch: int = 0):
    """`train_step(state, data_key, step, signal, params) -> (state, metrics)`, jitted, for a Monte Carlo
    library: `signal` (B, M) clean E and `params` (B, P) from the Grain stream; noise from fold_in(data_key, step)."""

    def train_step(state, data_key, step, signal, params):
        TRACES["train_step"] += 1
        model, optimizer = nnx.merge(graphdef, state)
        sim = simulator.observe(jax.random.fold_in(data_key, step), signal, params, protocols_per_batch or 1)
        batch = shard_batch(network_batch(sim, space), mesh, batch_size)
        (loss, metrics), grads = nnx.value_and_grad(lambda m: m.loss(batch), has_aux=True)(model)
        optimizer.update(model, grads)
        metrics = {**metrics, "grad_norm": optax.global_norm(grads)}
        return nnx.state((model, optimizer)), metrics

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(graphdef, simulator: Simulator, space, n_sims: int):
    """`eval_step(state, key) -> metrics` on `n_sims` fresh simulations (the key fixes them)."""

    def eval_step(state, key):
        model, _ = nnx.merge(graphdef, state)
        batch = network_batch(simulator.simulate(key, n_sims), space)
        return model.loss(batch)[1]

    return jax.jit(eval_step)


# ---------------------------------------------------------------------------- the loop
def train_and_evaluate(config: Config | str, workdir: str) -> dict:
    """Train (or resume) the run `config` in `workdir`; return a summary dict.

    Rerunning the same command after an interruption (even kill -9) resumes from the newest complete
    checkpoint. A workdir already holding a run with a different config is refused (only
    `training.steps`, evaluation, checkpoint and tracking settings may change between runs).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    os.makedirs(workdir, exist_ok=True)
    t_setup = time.perf_counter()
    tc = config.training
    simulator = build_simulator(config)
    library = getattr(simulator, "description", None)  # a Monte Carlo library's record, or None (analytic)
    mesh = data_mesh()
    check_batch_size(tc.batch_size, mesh)
    stats_key, init_key, data_key, val_key, diag_key = jax.random.split(jax.random.PRNGKey(tc.seed), 5)

    ckpts = TrainingCheckpoints(workdir, keep=config.checkpoint.keep)
    resume_meta = None
    if ckpts.latest_step() is not None:
        resume_meta = ckpts.latest.restore(ckpts.latest_step(), args=_meta_only())["meta"]
        _check_same_run(resume_meta["config"], to_dict(config))
        if library is not None:
            from .library_data import check_same_library

            check_same_library(resume_meta.get("library", {}), library)
    space = build_space(simulator, resume_meta["stats"] if resume_meta else None, key=stats_key, n=tc.stats_samples)

    schedule = learning_rate_schedule(config)
    graphdef, state = init_state(config, space, simulator.protocol.n_max, make_optimizer(config, schedule), init_key)
    start, best_loss = 0, float("inf")
    if resume_meta is not None:
        model, optimizer = nnx.merge(graphdef, state)
        start, _ = ckpts.restore_latest(model, optimizer)
        best = ckpts.best_meta()
        best_loss = best["val_loss"] if best else float("inf")
        state = nnx.state((model, optimizer))
    state = replicate(state, mesh)
    if library is None:
        train_step = make_train_step(graphdef, simulator, space, tc.batch_size, mesh, tc.protocols_per_batch)
        batches = None
    else:
        from .library_data import library_iterator

        train_step = make_library_train_step(graphdef, simulator, space, tc.batch_size, mesh, tc.protocols_per_batch)
        batches = library_iterator(simulator.dataset(tc.batch_size, tc.seed))
        if start:
            data_state = ckpts.restore_data_state(start)
            if data_state is None:
                raise ValueError(f"checkpoint step {start} in {workdir} has no Grain iterator state to resume from")
            batches.set_state(data_state)
    eval_step = make_eval_step(graphdef, simulator, space, config.evaluation.n_sims)

    base_meta = {
        "format": FORMAT_VERSION, "package_version": __version__, "config": to_dict(config),
        "model": simulator.model.name, "parameter_names": list(space.names), "stats": space.stats,
        "protocol": protocol_to_json(simulator.protocol), "n_measurements": simulator.protocol.n_max,
        "noise": dataclasses.asdict(config.noise),
    }
    if library is not None:
        base_meta["library"] = library
    tracker = make_tracker(config.tracking, workdir, to_dict(config))
    every_eval = config.evaluation.every or tc.steps
    every_ckpt = config.checkpoint.every or tc.steps
    setup_s = time.perf_counter() - t_setup

    summary = {"workdir": os.path.abspath(workdir), "resumed_from": start, "setup_seconds": setup_s}
    bar = tqdm(total=tc.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
    t_window, n_window, t_train, n_trained = time.perf_counter(), 0, 0.0, 0
    last = {}
    for step in range(start, tc.steps):
        if batches is None:
            state, metrics = train_step(state, data_key, jnp.asarray(step, jnp.int32))
        else:
            b = next(batches)
            state, metrics = train_step(state, data_key, jnp.asarray(step, jnp.int32), b["signal"], b["params"])
        n_window += 1
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:
            last = {k: float(v) for k, v in metrics.items()}
            if not np.isfinite(last["loss"]):
                raise FloatingPointError(f"training loss became {last['loss']} at step {done}")
            dt = time.perf_counter() - t_window
            rate = n_window * tc.batch_size / dt
            if step + 1 - n_window > start:  # the first window includes compilation
                t_train, n_trained = t_train + dt, n_trained + n_window
            tracker.log(done, {**{f"train/{k}": v for k, v in last.items()},
                               "lr": float(schedule(done)), "samples_per_second": rate})
            bar.set_postfix(loss=f"{last['loss']:.3f}", samples_s=f"{rate:,.0f}")
            t_window, n_window = time.perf_counter(), 0
        bar.update(1)
        if done % every_eval == 0 or done == tc.steps:
            val = {k: float(v) for k, v in eval_step(state, val_key).items()}
            tracker.log(done, {f"val/{k}": v for k, v in val.items()})
            if val["loss"] < best_loss:
                best_loss = val["loss"]
                model, _ = nnx.merge(graphdef, state)
                ckpts.save_best(done, model, {**base_meta, "step": done, "val_loss": best_loss, "val": val})
            t_window, n_window = time.perf_counter(), 0  # evaluation is not training throughput
        if done % every_ckpt == 0 or done == tc.steps:
            model, optimizer = nnx.merge(graphdef, state)
            ckpts.save_latest(done, model, optimizer, {**base_meta, "step": done},
                              data_state=None if batches is None else batches.get_state())
            t_window, n_window = time.perf_counter(), 0  # checkpoint time is not training throughput
    bar.close()

    diagnostics = {}
    if config.evaluation.diagnostics and ckpts.best.latest_step() is not None and start < tc.steps:
        best_model = _restore_best_model(ckpts, graphdef, state)
        diagnostics = posterior_diagnostics(
            best_model, simulator, space, diag_key, config.evaluation.n_sims, config.evaluation.n_draws,
            chunk=tc.batch_size, plot_dir=os.path.join(workdir, "plots"),
        )
        ckpts.save_final({"diagnostics": diagnostics})
        tracker.log(tc.steps, _flat_numbers(diagnostics, "diag"))
        for name, path in diagnostics["plots"].items():
            tracker.log_image(tc.steps, f"diag/{name}", path)
    ckpts.close()
    tracker.close()
    summary.update(
        steps=tc.steps, final_train=last, best_val_loss=best_loss,
        best_step=ckpts.best.latest_step(),
        samples_per_second=(n_trained * tc.batch_size / t_train) if t_train > 0 else float("nan"),
        train_step_traces=TRACES["train_step"], diagnostics=diagnostics,
    )
    return summary


# ---------------------------------------------------------------------------- helpers
def _meta_only():
    import orbax.checkpoint as ocp

    return ocp.args.Composite(meta=ocp.args.JsonRestore())


# data.path may move: a library run checks the library's manifest digest instead.
_MAY_CHANGE = ("training.steps", "training.log_every", "evaluation", "checkpoint", "tracking", "data.path")


def _check_same_run(stored: Mapping, current: Mapping) -> None:
    try:  # a run stored before a config key existed holds its default
        stored = to_dict(from_dict(stored))
    except ConfigError:
        pass

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    a, b = flat(stored), flat(current)
    for key in sorted(set(a) | set(b)):
        if any(key == m or key.startswith(m + ".") for m in _MAY_CHANGE):
            continue
        if a.get(key) != b.get(key):
            raise ConfigError(key, f"the workdir holds a run with {a.get(key)!r}, not {b.get(key)!r}; "
                              "use a new --workdir (or the original config) to resume")


def _restore_best_model(ckpts: TrainingCheckpoints, graphdef, state):
    import orbax.checkpoint as ocp

    model, _ = nnx.merge(graphdef, state)
    model_state = nnx.state(model)
    out = ckpts.best.restore(ckpts.best.latest_step(), args=ocp.args.Composite(
        model=ocp.args.StandardRestore(nnx.to_pure_dict(model_state))))
    nnx.replace_by_pure_dict(model_state, out["model"])
    nnx.update(model, model_state)
    return model


def _flat_numbers(d, prefix):
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat_numbers(v, f"{prefix}/{k}"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}/{k}"] = v
    return out
