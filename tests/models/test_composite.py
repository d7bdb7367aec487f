"""Composition: shared parameters, simplex fractions, constraints, and hand-composed equality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.kernels import gaussian as k
from sbi_dmri.models import MultiCompartmentModel, tortuosity
from sbi_dmri.protocols import load_protocol

ACQ = load_protocol("hcp_3shell")
N = jnp.asarray(np.array([0.48, 0.6, 0.64]) / np.linalg.norm([0.48, 0.6, 0.64]))


def test_ball_stick_names_and_bit_for_bit_equality_with_hand_composition():
    m = models.get("ball_stick")
    assert m.parameter_names == ("orientation", "d_par", "d_iso", "f_stick")
    p = dict(orientation=N, d_par=jnp.float32(1.7), d_iso=jnp.float32(2.9), f_stick=jnp.float32(0.6))
    f = p["f_stick"]
    hand = f * k.stick(ACQ.bvalues, ACQ.directions, N, p["d_par"]) + (1.0 - f) * k.ball(ACQ.bvalues, p["d_iso"])
    np.testing.assert_array_equal(np.asarray(m.signal(ACQ, p)), np.asarray(hand))


def test_fixing_removes_a_parameter():
    m = models.get("ball_stick", d_iso=3.0)
    assert m.parameter_names == ("orientation", "d_par", "f_stick")
    full = m.resolve(dict(orientation=N, d_par=1.0, f_stick=0.2))
    assert full["d_iso"] == 3.0 and full["f_ball"] == pytest.approx(0.8)


def test_three_compartments_simplex_tortuosity_and_tie():
    m = MultiCompartmentModel(
        "test_szb",
        {"stick": models.get("stick"), "zeppelin": models.get("zeppelin"), "ball": models.get("ball")},
        derived={"d_perp": tortuosity("d_par", "f_stick", "f_zeppelin")},
        tied={"d_iso": "d_par"},
    )
    # Shared orientation and d_par; d_perp, d_iso constrained; two free fractions on a simplex.
    assert m.parameter_names == ("orientation", "d_par", "f_stick", "f_zeppelin")
    prior = m.prior
    assert prior.dim == 2 + 1 + 2
    p = dict(orientation=N, d_par=jnp.float32(2.0), f_stick=jnp.float32(0.3), f_zeppelin=jnp.float32(0.5))
    full = m.resolve(p)
    assert float(full["f_ball"]) == pytest.approx(0.2)
    assert float(full["d_perp"]) == pytest.approx(2.0 * (1 - 0.3 / 0.8))
    assert float(full["d_iso"]) == 2.0
    d = p["d_par"]
    hand = (
        p["f_stick"] * k.stick(ACQ.bvalues, ACQ.directions, N, d)
        + p["f_zeppelin"] * k.zeppelin(ACQ.bvalues, ACQ.directions, N, d, full["d_perp"])
        + full["f_ball"] * k.ball(ACQ.bvalues, d)
    )
    np.testing.assert_array_equal(np.asarray(m.signal(ACQ, p)), np.asarray(hand))
    # Prior draws respect the simplex.
    s = prior.sample(jax.random.PRNGKey(0), 2000)
    assert float(jnp.min(1 - s["f_stick"] - s["f_zeppelin"])) >= -1e-6


def test_rename_separates_shared_parameters():
    m = MultiCompartmentModel(
        "test_rename", {"stick": models.get("stick"), "zeppelin": models.get("zeppelin")},
        rename={"zeppelin.d_par": "d_par_ec"},
    )
    assert set(m.parameter_names) == {"orientation", "d_par", "d_par_ec", "d_perp", "f_stick"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fixed={"nope": 1.0}), "unknown parameters"),
        (dict(tied={"d_iso": "nope"}), "unknown parameter"),
        (dict(rename={"ball.nope": "x"}), "unknown compartment parameters"),
        (dict(bounds={"nope": (0, 1)}), "unknown parameter"),
    ],
)
def test_bad_constraints_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiCompartmentModel("bad", {"stick": models.get("stick"), "ball": models.get("ball")}, **kwargs)


def test_registry_errors_and_listing():
    assert {"ball", "stick", "zeppelin", "tensor", "stick_spherical_mean", "zeppelin_spherical_mean",
            "ball_stick"} <= set(models.available())
    assert "ball_stick" in models.available("tissue") and "ball" not in models.available("tissue")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        models.get("nope")
    with pytest.raises(KeyError, match="missing"):
        models.get("ball").check_params({})
