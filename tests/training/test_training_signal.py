"""The training simulator's signal is the model's own signal (NODDI through the NLLS optimiser's cheaper but
equal form), so a network trained on it learns the model, not an approximation of it."""

import jax
import jax.numpy as jnp
import numpy as np

from sbi_dmri.training.config import load_config
from sbi_dmri.training.data import build_simulator


def test_noddi_training_signal_equals_model_signal():
    sim = build_simulator(load_config("configs/noddi.yaml", []))
    s = jax.jit(lambda k: sim.simulate(k, 32, 4))(jax.random.PRNGKey(3))
    reference = jax.vmap(sim.model.signal)(s.acquisition, s.params)
    err = float(jnp.max(jnp.abs(jnp.where(s.mask, reference - s.clean, 0.0))))
    assert err < 2e-6, err  # float32 rounding; the quadrature's own error is ≤ 5e-8 (fitting/fast_signal.py)
    assert float(np.std(np.asarray(s.clean)[np.asarray(s.mask)])) > 0.1  # real, varied signals
