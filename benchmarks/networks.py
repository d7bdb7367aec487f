"""Network design measurements: flow family on a non-Gaussian target, protocol half once vs per voxel,
nnx.jit vs split/merge + jax.jit call overhead, and the volume-scale cost of the encoders and of the
flow's draws.

    python benchmarks/networks.py            (prints Markdown tables)
    python benchmarks/networks.py volume     (only the encoder/flow cost at volume scale)
"""

from __future__ import annotations

import math
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sbi_dmri.networks import AmortizedPosterior, apply_fns
from sbi_dmri.networks.features import FEATURE_DIM
from sbi_dmri.networks.flows import ConditionalFlow


def banana(key, n):
    k1, k2 = jax.random.split(key)
    x1 = jax.random.normal(k1, (n,))
    return jnp.stack([x1, 0.8 * (x1**2 - 1.0) + 0.5 * jax.random.normal(k2, (n,))], axis=-1)


def banana_logp(x):
    r = (x[:, 1] - 0.8 * (x[:, 0] ** 2 - 1.0)) / 0.5
    return -0.5 * x[:, 0] ** 2 - 0.5 * r**2 - math.log(2 * math.pi) - math.log(0.5)


def flow_kl(kind, steps=1000, seed=0):
    flow = ConditionalFlow(2, 1, kind=kind, n_layers=4, hidden=32, depth=2, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(flow)
    tx = optax.adam(3e-3)
    opt = tx.init(state)
    ctx = jnp.zeros((256, 1))

    @jax.jit
    def train(state, opt, keys):
        def step(carry, key):
            state, opt = carry
            loss, g = jax.value_and_grad(lambda s: -jnp.mean(nnx.merge(graphdef, s).log_prob(banana(key, 256), ctx)))(state)
            upd, opt = tx.update(g, opt, state)
            return (optax.apply_updates(state, upd), opt), loss

        return jax.lax.scan(step, (state, opt), keys)[0]

    state, _ = train(state, opt, jax.random.split(jax.random.PRNGKey(seed + 1), steps))
    test = banana(jax.random.PRNGKey(99), 20000)
    return float(jnp.mean(banana_logp(test) - nnx.merge(graphdef, state).log_prob(test, jnp.zeros((20000, 1)))))


def bimodal(key, n):
    k1, k2 = jax.random.split(key)
    return (jnp.where(jax.random.bernoulli(k1, 0.5, (n,)), -1.5, 1.5) + 0.5 * jax.random.normal(k2, (n,)))[:, None]


def bimodal_logp(x):
    x = x[:, 0]
    comp = -0.5 * ((x[:, None] - jnp.array([[-1.5, 1.5]])) / 0.5) ** 2 - math.log(0.5 * math.sqrt(2 * math.pi))
    return jax.scipy.special.logsumexp(comp, axis=1) + math.log(0.5)


def flow_kl_1d(kind, steps=1000, seed=0):
    """D = 1 (e.g. a one-parameter model): affine couplings compose to an affine map, i.e. a Gaussian."""
    flow = ConditionalFlow(1, 1, kind=kind, n_layers=4, hidden=32, depth=2, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(flow)
    tx = optax.adam(3e-3)
    opt = tx.init(state)
    ctx = jnp.zeros((256, 1))

    @jax.jit
    def train(state, opt, keys):
        def step(carry, key):
            state, opt = carry
            loss, g = jax.value_and_grad(lambda s: -jnp.mean(nnx.merge(graphdef, s).log_prob(bimodal(key, 256), ctx)))(state)
            upd, opt = tx.update(g, opt, state)
            return (optax.apply_updates(state, upd), opt), loss

        return jax.lax.scan(step, (state, opt), keys)[0]

    state, _ = train(state, opt, jax.random.split(jax.random.PRNGKey(seed + 1), steps))
    test = bimodal(jax.random.PRNGKey(99), 20000)
    return float(jnp.mean(bimodal_logp(test) - nnx.merge(graphdef, state).log_prob(test, jnp.zeros((20000, 1)))))


def median_time(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(only=None):
    print("## Flow family on the 2-D banana (KL(p‖q) nats, 20 000 held-out draws, 1000 Adam steps)\n")
    print("| flow | seed 0 | seed 1 | seed 2 |\n|---|---|---|---|")
    for kind in ("spline", "affine"):
        print(f"| {kind} coupling ×4 | " + " | ".join(f"{flow_kl(kind, seed=s):.3f}" for s in range(3)) + " |")
    print("(best Gaussian: 0.900; base N(0, I): 0.952)\n")
    print("## Flow family, D = 1 bimodal target ½N(−1.5, 0.5²) + ½N(1.5, 0.5²) (KL nats, 1000 steps)\n")
    print("| flow | seed 0 | seed 1 |\n|---|---|---|")
    for kind in ("spline", "affine"):
        print(f"| {kind} | " + " | ".join(f"{flow_kl_1d(kind, seed=s):.3f}" for s in range(2)) + " |")
    print()

    print("## Set encoder, B = 4096 voxels × M = 90 measurements, hidden 64 (median of 5, s)\n")
    net = AmortizedPosterior(parameter_dim=5, feature_dim=FEATURE_DIM, encoder="set", hidden=64, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(net)
    fns = apply_fns(graphdef)
    B, M = 4096, 90
    protocol = jax.random.normal(jax.random.PRNGKey(0), (M, FEATURE_DIM))
    batch = {"signals": jax.random.uniform(jax.random.PRNGKey(1), (B, M)), "mask": jnp.ones((B, M), bool)}
    emb = fns.protocol_embedding(state, protocol)
    t_once = median_time(fns.context_from_embedding, state, batch, emb)
    t_voxel = median_time(fns.context, state, batch | {"protocol": jnp.broadcast_to(protocol, (B, M, FEATURE_DIM))})
    print("| protocol half | time |\n|---|---|")
    print(f"| once per protocol (M, H) | {t_once:.4f} |\n| per voxel (B, M, F) | {t_voxel:.4f} |\n")

    print("## Call overhead, small batch (B = 8, M = 90): nnx.jit vs split/merge + jax.jit (median of 5, ms)\n")
    small = {"signals": batch["signals"][:8], "mask": batch["mask"][:8], "protocol": protocol}
    ctx_nnx = nnx.jit(lambda n, b: n.context(b))
    t_nnx = median_time(ctx_nnx, net, small, repeats=20)
    t_jax = median_time(fns.context, state, small, repeats=20)
    print(f"| nnx.jit | {1e3 * t_nnx:.2f} |\n| jax.jit(merge) | {1e3 * t_jax:.2f} |\n")
    volume_costs()


def volume_costs(n_voxels: int = 8192, n_draw_voxels: int = 1024, draws: int = 100):
    """Seconds per 100 000 voxels of hcp_3shell (96 measurements): context from signals (the protocol half
    once per protocol, as in volume inference), and 100 flow draws per voxel, for each encoder and width."""
    from sbi_dmri.networks import protocol_features
    from sbi_dmri.protocols import load_protocol

    acq = load_protocol("hcp_3shell")
    acq = type(acq).pgse(acq.bvalues, acq.directions, delta=acq.delta, Delta=acq.Delta)
    protocol, M = protocol_features(acq), acq.n_measurements
    batch = {"signals": jax.random.uniform(jax.random.PRNGKey(1), (n_voxels, M)), "mask": jnp.ones((n_voxels, M), bool),
             "frame": jnp.broadcast_to(jnp.eye(3), (n_voxels, 3, 3))}
    scale = 100_000 / n_voxels
    print(f"## Volume-scale cost (s per 100 000 voxels, hcp_3shell M = {M}, D = 5; median of 5)\n")
    print("| encoder | hidden | flow hidden | frame moments | context | 100 draws per voxel |\n|---|---|---|---|---|---|")
    for encoder, hidden, flow_hidden, moments in (("set", 64, 64, 0), ("set", 32, 32, 0), ("separable", 64, 64, 0),
                                                  ("separable", 64, 32, 0), ("separable", 64, 32, 16)):
        net = AmortizedPosterior(parameter_dim=5, feature_dim=FEATURE_DIM, encoder=encoder, hidden=hidden,
                                 flow_hidden=flow_hidden, frame_input=True, frame_moments=moments, rngs=nnx.Rngs(0))
        graphdef, state = nnx.split(net)
        fns = apply_fns(graphdef)
        emb = fns.protocol_embedding(state, protocol)
        t_ctx = median_time(fns.context_from_embedding, state, batch, emb)
        ctx = fns.context_from_embedding(state, batch, emb)[:n_draw_voxels]
        t_draw = median_time(lambda st, c: fns.sample(st, c, jax.random.PRNGKey(2), n=draws), state, ctx)
        print(f"| {encoder} | {hidden} | {flow_hidden} | {moments} | {t_ctx * scale:.2f} | {t_draw * 100_000 / n_draw_voxels:.1f} |")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["volume"]:
        volume_costs()
    elif sys.argv[1:] == ["1d"]:
        for kind in ("spline", "affine"):
            print(kind, [round(flow_kl_1d(kind, seed=s), 3) for s in range(2)])
    else:
        main()
