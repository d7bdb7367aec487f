"""Model card bookkeeping: adding the C2ST to an existing card scores the voxels a full evaluation would."""

import numpy as np


def test_add_c2st_scores_the_voxels_a_full_evaluation_would_and_updates_the_gates(monkeypatch):
    from sbi_dmri.inference import model_card
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    calls = []

    def fake_c2st(net, acquisition, signals, init, snr, *, n_draws=1000, seed=0, corrected=False):
        calls.append((np.asarray(signals).copy(), {k: np.asarray(v).copy() for k, v in init.items()}, seed, corrected))
        acc = np.full(len(signals), 0.55)
        return {"accuracies": acc, "corrected_accuracies": acc - 0.05, "corrected_distinct_draws_median": 900.0,
                "nuts_rhat_max": 1.004, "nuts_ess_min": 800.0, "nuts_draws_per_chain": 1000, "nuts_divergences": 0,
                "n_draws": n_draws}

    monkeypatch.setattr(model_card, "c2st_against_nuts", fake_c2st)
    net = load_pretrained("ball_stick")
    acq = load_protocol("hcp_3shell")
    ev = model_card.evaluate_checkpoint(net, acq, n_sims=30, n_draws=50, corrected_draws=50, only_snrs=(20.0,),
                                        c2st_voxels=20)
    assert list(ev["by_snr"]) == ["20"] and len(calls) == 1
    for rep in (ev["by_snr"]["20"], ev["by_snr"]["20"]["corrected"]):  # as if measured without it
        del rep["c2st"]
        rep["gated"].remove("c2st")
    model_card.add_c2st(net, acq, ev, 20.0, voxels=20)
    (y_full, init_full, seed_full, cor_full), (y_add, init_add, seed_add, cor_add) = calls
    assert len(y_full) == 20 and seed_full == seed_add and cor_full and cor_add
    np.testing.assert_array_equal(y_add, y_full)
    for k in init_full:
        np.testing.assert_allclose(init_add[k], init_full[k], rtol=1e-6, atol=1e-7)
    r = ev["by_snr"]["20"]
    assert r["c2st"]["pass"] and "c2st" in r["gated"] and r["c2st"]["nuts_rhat_max"] == 1.004
    assert r["corrected"]["c2st"]["max"] == 0.5 and r["corrected"]["c2st"]["distinct_draws_median"] == 900.0
    # an accuracy above 0.60 fails the gate and the report
    monkeypatch.setattr(model_card, "c2st_against_nuts",
                        lambda *a, **k: {**fake_c2st(*a, **k), "accuracies": np.full(20, 0.7)})
    model_card.add_c2st(net, acq, ev, 20.0, voxels=20)
    assert not r["c2st"]["pass"] and not r["pass"]
