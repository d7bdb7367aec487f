"""The in-vivo-like test set: every shipped model has ranges, they lie inside its training prior, and
draws fill them (not just the corners)."""

import jax
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.inference import test_sets
from sbi_dmri.inference.test_sets import IN_VIVO_RANGES
from sbi_dmri.networks.parameter_space import ParameterSpace


@pytest.mark.parametrize("name", sorted(IN_VIVO_RANGES))
def test_in_vivo_draws_fill_their_ranges_inside_the_training_prior(name):
    space = ParameterSpace(models.get(name))
    assert test_sets.test_set_prior(space, "uniform") is space.prior
    draws = test_sets.test_set_prior(space, "in-vivo-like").sample(jax.random.PRNGKey(0), 4000)
    assert np.all(np.isfinite(np.asarray(space.prior.log_prob(draws))))
    for p, (lo, hi) in IN_VIVO_RANGES[name].items():
        v = np.asarray(draws[p])
        assert lo <= v.min() and v.max() <= hi
        np.testing.assert_allclose(np.quantile(v, [0.25, 0.75]), [lo + (hi - lo) / 4, hi - (hi - lo) / 4],
                                   atol=0.03 * (hi - lo))
    for axis in space.axis_names:  # axes stay uniform on the sphere: |n_z| ~ U(0, 1)
        assert abs(np.mean(np.abs(np.asarray(draws[axis])[:, 2])) - 0.5) < 0.02


def test_unknown_test_set_or_model_is_refused():
    space = ParameterSpace(models.get("ball_stick"))
    with pytest.raises(ValueError, match="test_set must be one of"):
        test_sets.test_set_prior(space, "ex-vivo")
    with pytest.raises(ValueError, match="no in-vivo-like ranges"):
        test_sets.test_set_prior(ParameterSpace(models.get("axcaliber")), "in-vivo-like")
