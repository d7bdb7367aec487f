"""Data parallelism: on 2 (forced host) devices the loss curve equals the 1-device curve.

XLA reads `--xla_force_host_platform_device_count` at start-up, so the check runs in a child process.
"""

import json

import numpy as np

from .conftest import TINY, run_child

SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
from sbi_dmri.training.config import load_config
from sbi_dmri.training.data import build_simulator
from sbi_dmri.training.loop import (TRACES, build_space, init_state, learning_rate_schedule, make_optimizer,
                                    make_train_step)
from sbi_dmri.training.sharding import data_mesh, replicate
assert len(jax.devices()) == 2, jax.devices()
config = load_config(sys.argv[1])
sim = build_simulator(config)
space = build_space(sim, key=jax.random.PRNGKey(1), n=2000)
tx = make_optimizer(config, learning_rate_schedule(config))
out = {}
for name, devices in (("one", jax.devices()[:1]), ("two", jax.devices())):
    mesh = data_mesh(devices)
    graphdef, state = init_state(config, space, sim.protocol.n_max, tx, jax.random.PRNGKey(2))
    state = replicate(state, mesh)
    step_fn = make_train_step(graphdef, sim, space, config.training.batch_size, mesh)
    losses = []
    for step in range(6):
        state, metrics = step_fn(state, jax.random.PRNGKey(3), jnp.asarray(step, jnp.int32))
        losses.append(float(metrics["loss"]))
    leaf = jax.tree_util.tree_leaves(state)[0]
    out[name] = {"losses": losses, "n_devices": len(leaf.sharding.device_set),
                 "replicated": bool(leaf.sharding.is_fully_replicated)}
out["traces"] = TRACES["train_step"]
print(json.dumps(out))
"""


def test_two_device_loss_curve_equals_one_device_curve(child_env):
    env = dict(child_env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = json.loads(run_child(SCRIPT, [TINY], env).splitlines()[-1])
    assert out["two"]["n_devices"] == 2 and out["two"]["replicated"]  # parameters stay replicated
    one, two = np.array(out["one"]["losses"]), np.array(out["two"]["losses"])
    assert np.ptp(one) > 1e-3  # the parameters move, so agreement is not trivial
    np.testing.assert_allclose(two, one, rtol=2e-4, atol=2e-4)
    assert out["traces"] == 2  # one trace per mesh, none per step
