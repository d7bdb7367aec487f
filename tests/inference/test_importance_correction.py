"""Importance correction of amortized posteriors: exactness on a Gaussian target with a wrong proposal,
the S0-marginal likelihood, the weighted summaries, and the gain on the shipped ball_stick network."""

import jax
import jax.numpy as jnp
import numpy as np

from sbi_dmri.inference.importance_correction import (
    adaptive_importance, corrected_weights, effective_sample_size, log_target, systematic_resample, truncated_weights,
    weighted_quantile, weighted_summaries,
)


def _gaussian_logpdf(theta, mean, sd):
    return jnp.sum(-0.5 * ((theta - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def test_adaptive_importance_recovers_a_gaussian_posterior_from_a_wide_offset_proposal():
    """Target N(m, 0.05²) per voxel in 3-D; the 'network' is N(m + 0.1, 0.3²): 6× too wide and 2 sd off.
    The corrected mean and sd match the target within Monte Carlo error, and the adapted stage lifts the
    effective sample size far above plain importance sampling with the proposal alone."""
    C, D, S = 6, 3, 2000
    m = jnp.linspace(-1.0, 1.0, C * D).reshape(C, D)
    sd_p, sd_q, shift = 0.05, 0.3, 0.1

    def draw(k, n):
        return m[:, None] + shift + sd_q * jax.random.normal(k, (C, n, D))

    def log_q(t):
        return _gaussian_logpdf(t, m[:, None] + shift, sd_q)

    def sample(k, n):
        t = draw(k, n)
        return t, log_q(t)

    def log_p(t):
        return _gaussian_logpdf(t, m[:, None], sd_p) + 3.0  # unnormalised: any constant

    theta, lw = adaptive_importance(sample, log_q, log_p, jax.random.PRNGKey(0), S)
    w = truncated_weights(lw)
    mean = jnp.einsum("cs,csd->cd", w, theta)
    sd = jnp.sqrt(jnp.einsum("cs,csd->cd", w, (theta - mean[:, None]) ** 2))
    ess = 1.0 / jnp.sum(w**2, axis=1)
    assert float(jnp.min(ess)) > 300
    np.testing.assert_allclose(mean, m, atol=5 * sd_p / np.sqrt(300))
    np.testing.assert_allclose(sd, sd_p, rtol=0.15)

    # the proposal alone: the same number of draws gives a far smaller effective sample size
    t_q = draw(jax.random.PRNGKey(1), S)
    w_q = truncated_weights(log_p(t_q) - log_q(t_q))
    assert float(jnp.median(1.0 / jnp.sum(w_q**2, axis=1))) < 0.3 * float(jnp.median(ess))


def test_corrected_weights_fall_back_to_the_networks_own_draws_given_by_n_draws():
    lw = jnp.full((2, 8), -jnp.inf).at[1].set(0.0)
    w = corrected_weights(lw, n_draws=4)  # a row of 4 draws padded to 8: its first 2 are the network's
    np.testing.assert_allclose(w[0], [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(w[1], np.full(8, 1 / 8))
    np.testing.assert_allclose(corrected_weights(lw)[0], [0.25] * 4 + [0] * 4)
    np.testing.assert_allclose(corrected_weights(lw, n_draws=jnp.array([8, 4]))[0], [0.25] * 4 + [0] * 4)
    np.testing.assert_allclose(effective_sample_size(corrected_weights(lw, n_draws=4)), [2.0, 8.0], rtol=1e-6)


def test_a_padded_row_is_truncated_as_its_own_draws_are():
    """A row padded with zero-weight columns (`pad_with_redraws`) gets exactly its unpadded weights when given its
    own draw count, also where truncation bites (cap √n/n of its own n draws, not of the padded width)."""
    lw = jnp.asarray(np.random.default_rng(0).normal(size=(3, 100)) * 2.0).at[:, 0].set(8.0)  # one weight dominates
    unpadded = corrected_weights(lw)
    assert float(jnp.max(jax.nn.softmax(lw, axis=-1))) > 0.1  # above the cap √100/100: truncation bites
    padded = jnp.concatenate([lw, jnp.full((3, 300), -jnp.inf)], axis=1)
    w = corrected_weights(padded, n_draws=jnp.array([100, 100, 100]))
    np.testing.assert_allclose(w[:, :100], unpadded, rtol=1e-6)
    assert np.all(np.asarray(w[:, 100:]) == 0)
    # the padded width as the count would cap at √400/400 instead: a different, tighter truncation
    assert not np.allclose(corrected_weights(padded)[:, :100], unpadded, rtol=1e-3)


def test_truncation_caps_a_single_dominant_weight():
    lw = jnp.array([[50.0] + [0.0] * 99])
    w = truncated_weights(lw)
    np.testing.assert_allclose(jnp.sum(w), 1.0, rtol=1e-6)
    # capped at √S/S before renormalisation: 0.1 / (0.1 + 99 · e⁻⁵⁰-ish) → essentially 1, but not from 1e21
    w_raw = jax.nn.softmax(lw[0])
    assert float(w[0, 0]) <= float(w_raw[0])
    lw2 = jnp.array([[3.0] + [0.0] * 99])  # e³ ≈ 20 > √100 = 10 times the mean: truncated
    w2 = truncated_weights(lw2)
    ratio = float(w2[0, 0] / w2[0, 1])
    assert ratio < np.exp(3.0) and ratio > 9.0
    # all weights zero: uniform (the caller flags the voxel)
    np.testing.assert_allclose(truncated_weights(jnp.full((1, 10), -jnp.inf)), 0.1, rtol=1e-6)


def test_weighted_quantile_matches_hazen_with_equal_weights_and_repetition_with_integer_weights():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 400))
    q = jnp.array([0.025, 0.5, 0.975])
    eq = weighted_quantile(jnp.asarray(v), jnp.full(v.shape, 1 / 400), q)
    np.testing.assert_allclose(eq, np.quantile(v, q, axis=1, method="hazen"), atol=1e-5)
    # integer weights ≡ repeated draws
    reps = rng.integers(1, 4, size=400)
    wq = weighted_quantile(jnp.asarray(v[:1]), jnp.asarray(reps[None] / reps.sum()), q)
    np.testing.assert_allclose(wq[:, 0], np.quantile(np.repeat(v[0], reps), q, method="hazen"), atol=0.03)


def test_weighted_summaries_of_axes_find_the_weighted_axis():
    """Two clusters of axes; all weight on one: the axial mean is that cluster's axis, its sign irrelevant."""
    a = jnp.array([0.0, 0.0, 1.0])
    b = jnp.array([1.0, 0.0, 0.0])
    axes = jnp.stack([a, -a, b, -b])[None]  # (1, 4, 3), antipodal pairs
    w = jnp.array([[0.5, 0.5, 0.0, 0.0]])
    out = weighted_summaries({"n": axes, "x": jnp.array([[1.0, 3.0, 10.0, 20.0]])}, w, ("n",), jnp.array([0.5]))
    np.testing.assert_allclose(jnp.abs(out["mean"]["n"][0]), a, atol=1e-6)
    np.testing.assert_allclose(out["std"]["n"], 0.0, atol=1e-2)
    np.testing.assert_allclose(out["mean"]["x"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(out["std"]["x"], 1.0, rtol=1e-6)


def test_systematic_resampling_counts_follow_the_weights():
    w = jnp.array([[0.5, 0.25, 0.125, 0.125, 0.0]])
    idx = np.asarray(systematic_resample(jax.random.PRNGKey(3), w, 80))
    counts = np.bincount(idx[0], minlength=5)
    assert np.all(np.abs(counts - 80 * np.asarray(w[0])) <= 1)
    assert counts[4] == 0


def test_log_target_marginalises_the_b0_scale_by_quadrature():
    """log_target's likelihood is the density of b0-normalised signals, ∫ u^(M−1) Π p(u y | μ, σ) du
    (`noise.log_likelihood_s0_marginal`): compare with a fine grid, Gaussian noise, two draws."""
    from sbi_dmri import models
    from sbi_dmri.networks.parameter_space import ParameterSpace, identity_frames
    from sbi_dmri.protocols import load_protocol

    jax.config.update("jax_enable_x64", True)
    try:
        model = models.get("ball_stick")
        space = ParameterSpace(model)
        acq = load_protocol("hcp_3shell")
        theta = space.to_theta(space.prior.sample(jax.random.PRNGKey(0), 2), identity_frames(2))  # (2, D)
        theta = theta[None]  # (1, 2, D): one voxel, two draws
        frame = identity_frames(1)
        mu = jax.vmap(model.signal, in_axes=(None, 0))(acq, space.from_theta(theta[0], frame))  # (2, M)
        sigma = 0.04
        y = 1.07 * mu[0] + sigma * jax.random.normal(jax.random.PRNGKey(1), mu[0].shape)
        batch = {"signals": y[None], "frame": frame}
        lt = log_target(batch, theta, space, acq, jnp.array([sigma]), "gaussian")
        prior = space.prior_log_prob_theta(theta, frame[:, None])
        u = jnp.linspace(0.01, 3.0, 200001)  # the poor draw scales y by u* ≈ 0.52
        M = y.shape[0]
        for j in range(2):
            ll = (M - 1) * jnp.log(u) + jnp.sum(-0.5 * ((u[:, None] * y[None] - mu[j][None]) / sigma) ** 2, axis=1) \
                - M * (jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi))
            exact = jax.scipy.special.logsumexp(ll) + jnp.log(u[1] - u[0])
            np.testing.assert_allclose(lt[0, j] - prior[0, j], exact, rtol=1e-6, atol=1e-5)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_correction_brings_the_shipped_ball_stick_network_closer_to_the_truth():
    """SNR 50 on hcp_3shell, where the network is calibrated but wide: the corrected posterior mean of
    f_stick and d_par is closer to the truth (RMSE) than the network's own, over 256 prior draws."""
    from sbi_dmri.inference import infer_voxels
    from sbi_dmri.noise import add_noise
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained("ball_stick")
    acq = load_protocol("hcp_3shell")
    truth = net.space.prior.sample(jax.random.PRNGKey(4), 256)
    mu = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(5), mu, 50.0, kind="rician", s0=1.0))
    raw = infer_voxels(net, y, acq, samples=200, progress=False, snr=50.0, correct=False)
    cor = infer_voxels(net, y, acq, samples=200, progress=False, snr=50.0, correct=True)
    assert cor.corrected.all() and not raw.corrected.any()
    for name in ("f_stick", "d_par"):
        rmse = {k: float(np.sqrt(np.mean((r.mean[name] - np.asarray(truth[name])) ** 2))) for k, r in
                (("raw", raw), ("corrected", cor))}
        assert rmse["corrected"] < 0.9 * rmse["raw"], (name, rmse)
    # the corrected intervals are narrower: the network is wider than the exact posterior at SNR 50
    assert np.median(cor.std["f_stick"]) < np.median(raw.std["f_stick"])


def test_corrected_posterior_api_agrees_with_the_volume_engine():
    """`net.corrected_posterior` (Python API) and `infer_voxels` (maps) compute the same corrected means from
    the same draws scheme; resampled draws reproduce the weighted mean within Monte Carlo error."""
    from sbi_dmri.inference import infer_voxels
    from sbi_dmri.noise import add_noise
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained("ball_stick")
    acq = load_protocol("hcp_3shell")
    truth = net.space.prior.sample(jax.random.PRNGKey(8), 16)
    mu = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(9), mu, 30.0, kind="rician", s0=1.0))
    post = net.corrected_posterior(y, acq, n_draws=2000, snr=30.0)
    maps = infer_voxels(net, y, acq, samples=2000, progress=False, snr=30.0)
    mean, sd = post.mean(), post.std()
    # independent draws, same target: agree within a few posterior sds / √ESS
    np.testing.assert_allclose(mean["f_stick"], maps.mean["f_stick"], atol=float(4 * np.max(sd["f_stick"]) / np.sqrt(50)))
    assert np.all(np.abs(np.sum(mean["orientation"] * maps.mean["orientation"], axis=-1)) > np.cos(np.radians(5)))
    q = post.quantile([0.025, 0.975])["d_par"]
    assert np.all(q[:, 0] < mean["d_par"]) and np.all(mean["d_par"] < q[:, 1])
    draws = post.sample(jax.random.PRNGKey(1), 4000)
    assert draws["orientation"].shape == (16, 4000, 3)
    np.testing.assert_allclose(np.mean(draws["f_stick"], axis=1), mean["f_stick"], atol=float(np.max(sd["f_stick"]) / 5))
    assert post.khat.shape == (16,) and np.median(post.khat) < 0.7

    # a voxel no draw can explain (a zero magnitude has Rician likelihood 0): the network's own draws, equally weighted
    y_dead = y.copy()
    y_dead[0, np.flatnonzero(np.asarray(acq.bvalues) > 0.5)[0]] = 0.0
    w = np.asarray(net.corrected_posterior(y_dead, acq, n_draws=200, snr=30.0).weights)
    np.testing.assert_allclose(w[0, :100], 1 / 100, rtol=1e-5)
    assert np.all(w[0, 100:] == 0)

    # min_ess: the short voxels (the dead one included) drawn again with 800 draws, the rest padded at zero weight
    post = net.corrected_posterior(y_dead, acq, n_draws=200, snr=30.0, min_ess=60)
    assert post.redrawn[0] and 0 < post.redrawn.sum() < 16 and post.weights.shape == (16, 800)
    kept = np.flatnonzero(~post.redrawn)
    assert np.all(np.asarray(post.weights)[kept, 200:] == 0)
    np.testing.assert_allclose(np.asarray(post.weights).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(post.mean()["f_stick"][1:], maps.mean["f_stick"][1:], atol=float(4 * np.max(sd["f_stick"]) / np.sqrt(50)))


def test_correction_runs_for_a_watson_model_and_uses_the_fast_signal():
    """NODDI's likelihood uses the merged Watson convolution (built outside jit from the concrete protocol);
    the corrected means stay inside the prior's bounds and every voxel is corrected."""
    from sbi_dmri.inference import infer_voxels
    from sbi_dmri.inference.importance_correction import likelihood_signal
    from sbi_dmri.noise import add_noise
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained("noddi")
    acq = load_protocol("hcp_3shell")
    assert likelihood_signal(net.space.model, acq) is not net.space.model.signal
    truth = net.space.prior.sample(jax.random.PRNGKey(2), 8)
    mu = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(3), mu, 30.0, kind="rician", s0=1.0))
    res = infer_voxels(net, y, acq, samples=50, progress=False, snr=30.0)
    assert res.corrected.all()
    for name, lo, hi in (("odi", 0.0, 1.0), ("ndi", 0.0, 1.0)):
        if name in res.mean:
            assert np.all((res.mean[name] >= lo) & (res.mean[name] <= hi)), name


def test_min_ess_redraws_only_the_voxels_short_of_effective_draws_and_brings_them_closer_to_the_posterior():
    """ball_stick, hcp_3shell, SNR 50, 100 draws: with min_ess = 20 the voxels
    short of it are drawn again with 400 draws, the others keep their maps bit for bit; the redrawn voxels'
    corrected means are nearer a 2000-draw reference than the first draws were, and a repeat call compiles nothing."""
    from sbi_dmri.inference import engine, infer_voxels
    from sbi_dmri.noise import add_noise
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained("ball_stick")
    acq = load_protocol("hcp_3shell")
    truth = net.space.prior.sample(jax.random.PRNGKey(11), 64)
    mu = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(12), mu, 50.0, kind="rician", s0=1.0))
    kw = dict(progress=False, snr=50.0, chunk_size=64)
    first = infer_voxels(net, y, acq, samples=100, **kw)
    red = infer_voxels(net, y, acq, samples=100, min_ess=20, **kw)
    ref = infer_voxels(net, y, acq, samples=2000, seed=3, **kw)
    assert first.redrawn is not None and not first.redrawn.any()
    assert 8 <= red.redrawn.sum() < 64, red.redrawn.sum()
    keep = ~red.redrawn
    for name in ("f_stick", "d_par"):
        np.testing.assert_array_equal(red.mean[name][keep], first.mean[name][keep])
        err_first = np.mean(np.abs(first.mean[name] - ref.mean[name])[red.redrawn])
        err_red = np.mean(np.abs(red.mean[name] - ref.mean[name])[red.redrawn])
        assert err_red < 0.75 * err_first, (name, err_red, err_first)
    before = engine.TRACES["posterior"]
    infer_voxels(net, y, acq, samples=100, min_ess=20, **kw)
    assert engine.TRACES["posterior"] == before


def test_model_card_redraws_pad_the_kept_voxels_with_zero_weights():
    """The card's corrected draws with min_ess: redrawn rows hold 4 × the draws, kept rows their first draws
    unchanged followed by zero-weight padding, and the counts tell `corrected_weights` each row's own draws."""
    from sbi_dmri.inference.model_card import _redrawn_theta_draws, _theta_draws
    from sbi_dmri.noise import add_noise
    from sbi_dmri.pretrained import load_pretrained
    from sbi_dmri.protocols import load_protocol

    net = load_pretrained("ball_stick")
    acq = load_protocol("hcp_3shell")
    truth = {k: np.asarray(v) for k, v in net.space.prior.sample(jax.random.PRNGKey(13), 16).items()}
    mu = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(14), mu, 50.0, kind="rician", s0=1.0), np.float32)
    key = jax.random.PRNGKey(15)
    s1, _, lw1 = _theta_draws(net, y, acq, truth, 100, key, 50.0, adaptive=True)
    s, _, lw, counts, red = _redrawn_theta_draws(net, y, acq, truth, 100, key, 50.0, min_ess=20)
    assert 0 < red.sum() < 16 and s.shape[1] == lw.shape[1] == 400
    np.testing.assert_array_equal(counts, np.where(red, 400, 100))
    np.testing.assert_array_equal(s[~red, :100], s1[~red])
    np.testing.assert_array_equal(lw[~red, :100], lw1[~red])
    assert np.all(lw[~red, 100:] == -np.inf) and np.all(np.isfinite(lw[red]).sum(axis=1) > 100)
    ess = np.asarray(effective_sample_size(corrected_weights(jnp.asarray(lw), jnp.asarray(counts))))
    assert np.all(ess[red] >= 20)
