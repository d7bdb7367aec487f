"""On-the-fly simulation: the statistics of simulated batches are what the config says.

Two simulated batches are shared by the tests (each costs one compilation on a loaded CPU).
"""

import jax
import numpy as np
import pytest
from scipy import stats

from sbi_dmri.acquisition import B0_THRESHOLD
from sbi_dmri.training.config import ConfigError, load_config
from sbi_dmri.training.data import build_model_and_prior, build_simulator

FAMILY = [
    "protocol.shells=[[0.9, 1.1], [2.8, 3.2]]", "protocol.directions=[3, 7]", "protocol.n_b0=[1, 3]",
    "protocol.delta=[10, 30]", "protocol.Delta=[15, 35]", "model.fixed.d_iso=3.0",
]


def _simulate(overrides, n, seed=0):
    sim = build_simulator(load_config(None, FAMILY + overrides))
    return sim, jax.jit(lambda k: sim.simulate(k, n))(jax.random.PRNGKey(seed))


@pytest.fixture(scope="module")
def gaussian():
    """3000 voxels with Gaussian noise at SNR 25, their network batch, and θ mapped back to parameters."""
    from sbi_dmri.training.data import network_batch
    from sbi_dmri.training.loop import build_space

    sim = build_simulator(load_config(None, FAMILY + ["noise.kind=gaussian", "noise.snr=25"]))
    space = build_space(sim, key=jax.random.PRNGKey(1), n=2000)

    @jax.jit
    def go(key):
        s = sim.simulate(key, 3000)
        batch = network_batch(s, space)
        return s, batch, space.from_theta(batch["theta"], batch["frame"])

    s, batch, back = go(jax.random.PRNGKey(0))
    return sim, s, batch, back


@pytest.fixture(scope="module")
def rician():
    return _simulate(["noise.kind=rician", "noise.snr=[5, 100]", "noise.snr_scale=log"], 3000, seed=1)


def test_clean_signals_equal_model_signal(gaussian):
    sim, s, _, _ = gaussian
    mask = np.asarray(s.mask)
    signal = jax.jit(sim.model.signal)
    for i in range(0, 3000, 301):  # each voxel against the model evaluated on its own protocol
        acq_i = jax.tree_util.tree_map(lambda x: x[i], s.acquisition)
        expected = np.asarray(signal(acq_i, {k: v[i] for k, v in s.params.items()}))
        np.testing.assert_allclose(np.asarray(s.clean[i])[mask[i]], expected[mask[i]], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(s.clean)[~mask] == 0.0) and np.all(np.asarray(s.signals)[~mask] == 0.0)


def test_signals_are_normalised_by_the_mean_noisy_b0(gaussian):
    _, s, _, _ = gaussian
    mask = np.asarray(s.mask)
    b0 = mask & (np.asarray(s.acquisition.bvalues) <= B0_THRESHOLD)
    noisy = np.asarray(s.noisy, np.float64)
    s0 = (noisy * b0).sum(axis=1) / b0.sum(axis=1)
    np.testing.assert_allclose(np.asarray(s.signals)[mask], (noisy / s0[:, None])[mask], rtol=1e-5)


def test_gaussian_noise_has_std_one_over_snr(gaussian):
    _, s, _, _ = gaussian
    mask = np.asarray(s.mask)
    resid = (np.asarray(s.noisy) - np.asarray(s.clean))[mask]
    n = resid.size
    assert abs(resid.mean()) < 4 / 25 / np.sqrt(n)
    assert abs(resid.std() * 25 - 1.0) < 4 / np.sqrt(2 * n)  # SE of a sample std ≈ σ/√(2n)
    np.testing.assert_allclose(np.asarray(s.snr), 25.0, rtol=1e-6)


def test_rician_noise_matches_the_rice_mean_at_each_voxels_snr(rician):
    _, s = rician
    mask = np.asarray(s.mask)
    snr = np.broadcast_to(np.asarray(s.snr, np.float64)[:, None], mask.shape)[mask]
    nu, y = np.asarray(s.clean, np.float64)[mask], np.asarray(s.noisy, np.float64)[mask]
    assert np.all(y >= 0)
    # Exact moments of the Rice distribution: E[y²] = ν² + 2σ², Var[y²] = 4σ²ν² + 4σ⁴.
    sigma = 1.0 / snr
    z = (y**2 - nu**2 - 2 * sigma**2) / np.sqrt(4 * sigma**2 * nu**2 + 4 * sigma**4)
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.std() - 1) < 4 / np.sqrt(2 * z.size)


def test_snr_is_log_uniform_in_its_range(rician):
    _, s = rician
    u = (np.log(np.asarray(s.snr)) - np.log(5)) / np.log(20)
    assert u.min() >= 0 and u.max() <= 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_mask_covers_exactly_the_sampled_counts_and_delta_below_Delta(gaussian):
    sim, s, _, _ = gaussian
    b = np.asarray(s.acquisition.bvalues)
    mask = np.asarray(s.mask)
    p = sim.protocol
    n_b0 = np.sum(mask & (b <= B0_THRESHOLD), axis=1)
    assert set(n_b0.tolist()) == {1, 2, 3}  # every count of the range occurs, nothing outside
    assert np.all(mask[:, : p.n_b0[1]].sum(axis=1) == n_b0)
    for k, (lo, hi) in enumerate(p.shells):
        sl = slice(p.n_b0[1] + k * p.directions[1], p.n_b0[1] + (k + 1) * p.directions[1])
        counts = mask[:, sl].sum(axis=1)
        assert set(counts.tolist()) == set(range(3, 8))
        assert np.all(np.diff(mask[:, sl].astype(int), axis=1) <= 0)  # the real slots come first
        assert np.all((b[:, sl] >= lo) & (b[:, sl] <= hi))
        assert np.all(np.ptp(b[:, sl], axis=1) == 0)  # one b per shell and voxel
    delta, Delta = np.asarray(s.acquisition.delta), np.asarray(s.acquisition.Delta)
    assert np.all(delta < Delta) and np.all(delta >= 10) and np.all(Delta <= 35)
    assert np.all(np.ptp(delta, axis=1) == 0)  # one δ per voxel's protocol
    np.testing.assert_allclose(np.linalg.norm(np.asarray(s.acquisition.directions), axis=-1), 1.0, atol=1e-5)


def test_prior_bound_overrides_reach_the_draws():
    _, prior = build_model_and_prior(load_config(None, ["model.bounds.d_par=[1.0, 1.5]"]))
    d = np.asarray(jax.jit(lambda k: prior.sample(k, 500))(jax.random.PRNGKey(0))["d_par"])
    assert d.min() >= 1.0 and d.max() <= 1.5 and np.ptp(d) > 0.4


def test_bad_model_options_are_config_errors():
    with pytest.raises(ConfigError, match="model.bounds.radius: not a bounded scalar parameter"):
        build_model_and_prior(load_config(None, ["model.bounds.radius=[1, 2]"]))
    with pytest.raises(ConfigError, match="model.fixed"):
        build_model_and_prior(load_config(None, ["model.fixed.bogus=1"]))


def test_network_batch_theta_round_trips_to_the_simulated_parameters(gaussian):
    _, s, batch, back = gaussian
    np.testing.assert_allclose(np.asarray(back["d_par"]), np.asarray(s.params["d_par"]), rtol=1e-4)
    cos = np.abs(np.sum(np.asarray(back["orientation"]) * np.asarray(s.params["orientation"]), axis=-1))
    assert np.all(cos > 1 - 1e-4)
    assert np.all(np.isfinite(np.asarray(batch["theta"])))
    np.testing.assert_array_equal(np.asarray(batch["signals"]), np.asarray(s.signals))
