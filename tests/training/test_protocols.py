"""Protocol families and fixed protocols: which acquisitions a trained network accepts (no JAX compile)."""

import numpy as np
import pytest

from sbi_dmri.acquisition import Acquisition
from sbi_dmri.training.protocols import FixedProtocol, ProtocolFamily, protocol_from_json, protocol_to_json

FAMILY = ProtocolFamily(shells=((0.9, 1.1), (1.9, 2.1)), directions=(10, 20), n_b0=(1, 3),
                        delta=(10.0, 20.0), Delta=(25.0, 40.0))


def _acq(n_b0=2, shells=((1.0, 12), (2.0, 15)), delta=15.0, Delta=30.0, seed=0):
    rng = np.random.default_rng(seed)
    b = [0.0] * n_b0 + [bv for bv, n in shells for _ in range(n)]
    g = rng.normal(size=(len(b), 3))
    return Acquisition.pgse(np.array(b), g / np.linalg.norm(g, axis=1, keepdims=True), delta=delta, Delta=Delta)


def test_family_accepts_its_members():
    FAMILY.check(_acq())
    FAMILY.check(_acq(n_b0=1, shells=((0.9, 10), (2.1, 20)), delta=10.0, Delta=40.0))


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(n_b0=5), "5 b=0 measurements (trained on 1–3)"),
    (dict(shells=((1.0, 12),)), "1 shells"),
    (dict(shells=((1.0, 12), (3.0, 12))), "shell b = 3 ms/µm² is not in a trained range of its own"),
    (dict(shells=((1.0, 12), (2.0, 30))), "has 30 directions (trained on 10–20)"),
    (dict(delta=5.0), "delta in [5, 5] ms outside the trained range"),
])
def test_family_refuses_other_protocols_saying_what_differs(kwargs, fragment):
    with pytest.raises(ValueError, match="outside the network's training protocol family") as info:
        FAMILY.check(_acq(**kwargs))
    assert fragment in str(info.value)


def test_fixed_protocol_accepts_sign_flipped_directions_and_refuses_others():
    acq = _acq()
    fixed = FixedProtocol(acq)
    flipped = Acquisition.pgse(acq.bvalues, -acq.directions, delta=15.0, Delta=30.0)
    fixed.check(flipped)  # ĝ and −ĝ measure the same signal
    with pytest.raises(ValueError, match="acquisition has 20 measurements; .* fixed protocol of 29"):
        fixed.check(acq.select(np.arange(20)))
    with pytest.raises(ValueError, match="differs from the fixed protocol"):
        fixed.check(_acq(seed=1))


@pytest.mark.parametrize("protocol", [FAMILY, FixedProtocol(_acq())])
def test_protocols_round_trip_through_checkpoint_json(protocol):
    import json

    back = protocol_from_json(json.loads(json.dumps(protocol_to_json(protocol))))
    assert type(back) is type(protocol) and back.n_max == protocol.n_max
    if isinstance(protocol, ProtocolFamily):
        assert back == protocol
    else:
        np.testing.assert_allclose(back.acquisition.bvalues, protocol.acquisition.bvalues)
        back.check(protocol.acquisition)


WIDE = ProtocolFamily(shells=((0.5, 1.5), (1.5, 2.5), (2.5, 3.1)), directions=(10, 40), n_b0=(1, 6),
                      delta=(8.0, 25.0), Delta=(20.0, 50.0), n_shells=(2, 3))


def test_variable_shell_count_family_accepts_2_and_3_shell_protocols_and_refuses_others():
    WIDE.check(_acq(shells=((1.0, 30), (2.0, 30), (3.0, 30))))
    WIDE.check(_acq(shells=((1.0, 32), (2.0, 32)), delta=20.0, Delta=35.0))
    WIDE.check(_acq(shells=((1.2, 30), (3.0, 30))))  # first and last range
    with pytest.raises(ValueError, match=r"1 shells .*trained on 2–3 shells"):
        WIDE.check(_acq(shells=((1.0, 30),)))
    with pytest.raises(ValueError, match="not in a trained range of its own"):
        WIDE.check(_acq(shells=((1.0, 30), (1.2, 30))))  # two shells in one range
    assert protocol_from_json(protocol_to_json(WIDE)) == WIDE
    legacy = protocol_to_json(FAMILY)
    legacy.pop("n_shells")
    assert protocol_from_json(legacy) == FAMILY  # checkpoints written before n_shells existed


def test_variable_shell_count_family_draws_every_allowed_count_and_subset():
    import jax

    acq, mask = jax.vmap(WIDE.sample)(jax.random.split(jax.random.PRNGKey(0), 400))
    b, mask = np.asarray(acq.bvalues), np.asarray(mask)
    used = np.stack([[np.any(mask[i] & (b[i] >= lo) & (b[i] <= hi)) for lo, hi in WIDE.shells] for i in range(400)])
    counts = used.sum(1)
    assert set(counts) == {2, 3}
    assert 0.35 < np.mean(counts == 2) < 0.65  # n ~ U{2, 3}
    two = used[counts == 2]
    # each of the three 2-shell subsets occurs (a uniformly random subset: about a third each)
    for dropped in range(3):
        assert np.mean(~two[:, dropped]) > 0.2
