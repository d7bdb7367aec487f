"""infer_volume on a small phantom with the shipped ball_stick network: maps, geometry, bounds, NaN voxels,
protocol refusal, all-or-nothing output, and no recompilation per chunk."""

import os

import nibabel as nib
import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.inference import engine
from sbi_dmri.inference import infer_volume
from sbi_dmri.phantom import make_phantom
from sbi_dmri.protocols import load_protocol

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "..", "checkpoints", "ball_stick")
pytestmark = pytest.mark.skipif(not os.path.isdir(SHIPPED), reason="shipped checkpoints/ball_stick missing")

CHUNK = 8  # the 16-voxel phantom runs as 2 chunks
SAMPLES = 40


@pytest.fixture(scope="module")
def net():
    from sbi_dmri.pretrained import load_pretrained

    return load_pretrained("ball_stick")


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    """A 6 × 6 × 1 phantom (16 voxels in the mask) on hcp_3shell, SNR 50; one copy with a NaN voxel."""
    acq = load_protocol("hcp_3shell")
    ph = make_phantom(models.get("ball_stick"), acq, shape=(6, 6, 1), snr=50.0, seed=3)
    clean = ph.write(str(tmp_path_factory.mktemp("clean")))
    bad = ph.signals.copy()
    bad[2, 3, 0, 7] = np.nan
    broken = dict(clean)
    broken["dwi"] = str(tmp_path_factory.mktemp("nan") / "dwi.nii.gz")
    nib.save(nib.Nifti1Image(bad, nib.load(clean["dwi"]).affine), broken["dwi"])
    return ph, clean, broken, (float(acq.delta[0]), float(acq.Delta[0]))


def _run(net, files, timing, out, **kw):
    return infer_volume(net, files["dwi"], files["bval"], files["bvec"], mask=files["mask"], delta=timing[0],
                        Delta=timing[1], out_dir=str(out), chunk_size=CHUNK, progress=False, **kw)


def _load(out, name):
    img = nib.load(os.path.join(out, f"{name}.nii.gz"))
    return img, np.asarray(img.dataobj)


@pytest.fixture(scope="module")
def runs(net, phantom_files, tmp_path_factory):
    ph, clean, broken, timing = phantom_files
    before = engine.TRACES["posterior"]
    out_clean, out_nan = tmp_path_factory.mktemp("out_clean"), tmp_path_factory.mktemp("out_nan")
    # the phantom's SNR given explicitly: the estimate (one σ from all usable voxels' b0 spread) would
    # otherwise move slightly when the broken voxel leaves the set, and this pair isolates the NaN handling
    s_clean = _run(net, clean, timing, out_clean, samples=SAMPLES, snr=50.0)
    s_nan = _run(net, broken, timing, out_nan, samples=SAMPLES, snr=50.0)
    traces = engine.TRACES["posterior"] - before
    return ph, out_clean, out_nan, s_clean, s_nan, traces


def test_all_maps_written_with_the_reference_geometry_and_inside_the_prior(net, runs):
    ph, out, _, summary, _, traces = runs
    assert summary["n_voxels"] == 2 * CHUNK
    assert traces == 1  # two volumes × two chunks each, one compilation
    expected = {f"{p}_{k}" for p in net.parameter_names for k in ("mean", "std", "q025", "q975", "width_ratio")}
    expected |= {"trust_khat", "trust_flag"}
    assert {f[: -len(".nii.gz")] for f in os.listdir(out)} == expected
    mask = ph.mask
    bounds = net.space.model.bounds
    for p in net.parameter_names:
        img, mean = _load(out, f"{p}_mean")
        assert img.shape[:3] == mask.shape
        np.testing.assert_allclose(img.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
        assert np.all(np.isnan(mean[~mask]))
        _, lo = _load(out, f"{p}_q025")
        _, hi = _load(out, f"{p}_q975")
        _, sd = _load(out, f"{p}_std")
        assert np.all(lo[mask] <= hi[mask]) and np.all(sd[mask] >= 0)
        if p == "orientation":
            assert img.shape == mask.shape + (3,)
            np.testing.assert_allclose(np.linalg.norm(mean[mask], axis=-1), 1.0, atol=1e-4)
            assert np.all(hi[mask] <= 90.0)  # angles in degrees
        else:
            b_lo, b_hi = bounds[p]
            assert np.all(lo[mask] >= b_lo) and np.all(hi[mask] <= b_hi)
            assert np.all((mean[mask] >= b_lo) & (mean[mask] <= b_hi))
    # the network recovers the phantom: f_stick within a few hundredths, tract axes within a few degrees
    _, f = _load(out, "f_stick_mean")
    assert np.sqrt(np.mean((f[mask] - ph.truth["f_stick"][mask]) ** 2)) < 0.08
    _, n = _load(out, "orientation_mean")
    tract = mask & (ph.truth["f_stick"] > 0.4)
    cos = np.abs(np.sum(n[tract] * ph.truth["orientation"][tract], axis=-1))
    assert np.median(np.degrees(np.arccos(np.clip(cos, 0, 1)))) < 10.0
    # f_stick is informed by the data (narrow posterior), the width ratio says so
    _, wr = _load(out, "f_stick_width_ratio")
    assert np.median(wr[mask]) < 0.5


def test_nan_voxel_gives_nan_maps_and_a_flag_and_leaves_the_others_unchanged(net, runs):
    ph, out_clean, out_nan, _, s_nan, _ = runs
    assert s_nan["n_unusable"] == 1
    _, flag = _load(out_nan, "trust_flag")
    assert flag[2, 3, 0] == 2
    others = ph.mask.copy()
    others[2, 3, 0] = False
    assert np.all(np.isin(flag[others], [0, 1]))
    for name in [f"{p}_{k}" for p in net.parameter_names for k in ("mean", "std", "q025", "q975")] + ["trust_khat"]:
        _, a = _load(out_nan, name)
        _, b = _load(out_clean, name)
        assert np.all(np.isnan(a[2, 3, 0]))
        np.testing.assert_array_equal(a[others], b[others])  # same chunk positions, same draws


def test_protocol_outside_the_family_is_refused_unless_forced(net, tmp_path):
    acq = load_protocol("sandi_5shell")  # 5 shells up to b = 10: the network was trained on 2-3 up to 3.1
    ph = make_phantom(models.get("ball_stick"), acq, shape=(4, 4, 1), snr=30.0)
    files = ph.write(str(tmp_path / "data"))
    out = tmp_path / "maps"
    with pytest.raises(ValueError, match="outside the network's training protocol family.*force"):
        _run(net, files, (10.0, 30.0), out, samples=0)
    assert not out.exists()
    s = _run(net, files, (10.0, 30.0), out, samples=0, force=True)
    assert s["warnings"] and "forced" in s["warnings"][0]
    assert os.path.exists(os.path.join(out, "f_stick_mean.nii.gz"))


def test_an_error_mid_way_leaves_no_files(net, phantom_files, tmp_path, monkeypatch):
    from sbi_dmri.diagnostics import importance

    _, clean, _, timing = phantom_files
    calls = {"n": 0}
    real = importance.pareto_khat

    def fail_on_second_chunk(lw, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(lw, **kw)

    monkeypatch.setattr(importance, "pareto_khat", fail_on_second_chunk)
    out = tmp_path / "maps"
    out.mkdir()
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run(net, clean, timing, out, samples=SAMPLES)
    assert calls["n"] == 2 and os.listdir(out) == []


def test_cli_refuses_an_out_of_family_protocol_in_one_line(tmp_path, capsys):
    from sbi_dmri.cli import main

    ph = make_phantom(models.get("ball_stick"), load_protocol("sandi_5shell"), shape=(3, 3, 1), snr=30.0)
    f = ph.write(str(tmp_path / "data"))
    rc = main(["infer", "--model", "ball_stick", "--dwi", f["dwi"], "--bval", f["bval"], "--bvec", f["bvec"],
               "--delta", "10", "--Delta", "30", "--out", str(tmp_path / "maps")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("sbi-dmri: error: acquisition outside") and "--force" in err
    assert not (tmp_path / "maps").exists()


def test_trust_log_weights_equal_the_constrained_space_formula_up_to_a_constant(net):
    """log w = log p(y|θ) + log p(θ) − log q(θ|y) (S0 marginalised) computed in θ space (engine) and independently in
    constrained units (Posterior.log_prob, Prior.log_prob) differ by a per-voxel constant: no Jacobian
    is missing or double counted, so k̂ measures the network, not a units mismatch."""
    import jax
    import jax.numpy as jnp

    from sbi_dmri.networks.posterior import Posterior
    from sbi_dmri.noise import add_noise, log_likelihood_s0_marginal

    acq = load_protocol("hcp_3shell")
    truth = net.space.prior.sample(jax.random.PRNGKey(5), 8)
    e = jax.vmap(net.space.model.signal, in_axes=(None, 0))(acq, truth)
    y = np.asarray(add_noise(jax.random.PRNGKey(6), e, 30.0, kind="rician", s0=1.0), np.float32)
    sigma = jnp.full((8,), 1 / 30.0, jnp.float32)
    key = jax.random.PRNGKey(0)
    fns = engine._chunk_functions(net, acq, SAMPLES, True, "rician", False)
    snr = jnp.full((8,), 30.0, jnp.float32)
    lw = np.asarray(fns.posterior(fns.state, y, fns.embedding, snr, key, sigma)["log_weights"], np.float64)

    batch = net.batch(y, acq, snr=30.0)
    post = Posterior(net.network, batch, net.space)
    draws = post.sample(key, SAMPLES)  # the same key and context: the same draws as the engine's
    mu = jax.vmap(jax.vmap(net.space.model.signal, in_axes=(None, 0)), in_axes=(None, 0))(acq, draws)
    loglik = log_likelihood_s0_marginal(batch["signals"][:, None, :], mu, sigma[:, None, None], "rician")
    lw_c = np.asarray(loglik + net.space.prior.log_prob(draws) - post.log_prob(draws), np.float64)
    diff = lw - lw_c
    assert np.all(np.isfinite(diff))
    spread = np.std(diff, axis=1)
    assert np.all(spread < 1e-3), spread  # measured ~1e-5 nats (float32), while lw itself spreads over 10-800 nats
    assert np.all(np.std(lw, axis=1) > 1.0)


def test_cli_min_ess_redraws_and_says_so(tmp_path, capsys):
    """`infer --min-ess` above what 50 draws can give: every voxel is drawn again (200 draws) and the summary
    line says how many; the maps are written."""
    from sbi_dmri.cli import main

    acq = load_protocol("hcp_3shell")
    ph = make_phantom(models.get("ball_stick"), acq, shape=(4, 4, 1), snr=30.0)
    f = ph.write(str(tmp_path / "data"))
    rc = main(["infer", "--model", "ball_stick", "--dwi", f["dwi"], "--bval", f["bval"], "--bvec", f["bvec"],
               "--delta", f"{float(np.asarray(acq.delta).flat[0]):g}", "--Delta", f"{float(np.asarray(acq.Delta).flat[0]):g}",
               "--samples", "50", "--min-ess", "60", "--out", str(tmp_path / "maps")])
    out = capsys.readouterr().out
    n_usable = int(out.split(" voxels,")[0]) - int(out.split(" unusable")[0].rsplit(" ", 1)[1])
    assert rc in (0, None) and n_usable > 0 and f"{n_usable} drawn again (fewer than 60 effective draws)" in out, out
    assert (tmp_path / "maps" / "f_stick_mean.nii.gz").exists()
