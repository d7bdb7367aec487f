"""The two test-set priors of EVALUATION.md: "uniform" (the network's training prior) and "in-vivo-like".

In-vivo-like: independent uniform draws on the ranges that in-vivo human brain studies report for each
model (white and grey matter, no CSF), axes uniform. The ranges (µm²/ms for diffusivities, µm for radii):

- ball_stick: f_stick 0.3–0.7, d_par 1.5–2.5, d_iso 0.6–1.5 (single-fibre white matter and cortex
  with the ball as the hindered extra-axonal space; Behrens et al., MRM 50:1077, 2003, report stick
  fractions of this size in white matter; intra-axonal parallel diffusivities of 1.5–2.5 are those
  of e.g. Kaden et al., NeuroImage 139:346, 2016).
- noddi: ndi 0.3–0.8, odi 0.05–0.6, f_iso 0–0.2 (cortex to white matter, Zhang et al., NeuroImage
  61:1000, 2012, Fig. 7–9; d_par and d_iso fixed by the model).
- sandi: f_neurite 0.25–0.6, f_soma 0.1–0.4, r_soma 5–12, d_in 1.5–3.0, d_e 0.5–1.5 (Palombo et al.,
  NeuroImage 215:116835, 2020, in-vivo human maps, white and grey matter).

These are approximate ranges read from the cited maps, not fits; what matters for the test is that they
concentrate the test set where tissue lies, as the uniform test set does not (Gyori et al., MRM 87:932,
2022). Every range lies inside the corresponding training prior.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..priors import AxisUniform, Prior, Uniform

IN_VIVO_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "ball_stick": {"f_stick": (0.3, 0.7), "d_par": (1.5, 2.5), "d_iso": (0.6, 1.5)},
    "noddi": {"ndi": (0.3, 0.8), "odi": (0.05, 0.6), "f_iso": (0.0, 0.2)},
    "sandi": {"f_neurite": (0.25, 0.6), "f_soma": (0.1, 0.4), "r_soma": (5.0, 12.0), "d_in": (1.5, 3.0),
              "d_e": (0.5, 1.5)},
}

TEST_SETS = ("uniform", "in-vivo-like")


def test_set_prior(space, test_set: str = "uniform") -> Prior:
    """The prior the test set's parameters are drawn from, for a network's `ParameterSpace`.

    "uniform": the training prior itself. "in-vivo-like": `IN_VIVO_RANGES[model name]`, axes uniform;
    a sampler only (its fractions are independent uniforms, not a chart the networks use).
    """
    if test_set == "uniform":
        return space.prior
    if test_set != "in-vivo-like":
        raise ValueError(f"test_set must be one of {TEST_SETS}, got {test_set!r}")
    name = space.model.name
    if name not in IN_VIVO_RANGES:
        raise ValueError(f"no in-vivo-like ranges for model {name!r}; known: {sorted(IN_VIVO_RANGES)}")
    ranges = IN_VIVO_RANGES[name]
    factors = []
    for p in space.model.parameter_names:
        if p in space.axis_names:
            factors.append(AxisUniform(p))
        elif p in ranges:
            factors.append(Uniform(p, *ranges[p]))
        else:
            raise ValueError(f"in-vivo-like ranges of {name!r} lack parameter {p!r}")
    prior = Prior(factors)
    # inside the training prior: the network was never asked about anything else
    draws = prior.sample(jax.random.PRNGKey(0), 256)
    if not bool(jnp.all(jnp.isfinite(space.prior.log_prob(draws)))):
        raise ValueError(f"in-vivo-like ranges of {name!r} leave the training prior")
    return prior
