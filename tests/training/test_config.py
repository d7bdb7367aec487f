"""Config loading: every error is one line naming the key; overrides and defaults behave."""

import os

import pytest

from sbi_dmri.training.config import Config, ConfigError, from_dict, load_config, to_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "configs")


def _error(overrides, path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("config error: ")
    return msg


def test_unknown_key_names_it_and_suggests():
    msg = _error(["training.stepz=10"])
    assert msg == "config error: training.stepz: unknown key (did you mean training.steps?)"
    assert _error(["trainig.steps=10"]).startswith("config error: trainig: unknown key (did you mean training?)")


def test_wrong_types_name_the_key():
    assert "training.steps: expected an integer, got 'ten'" in _error(["training.steps=ten"])
    assert "training.steps: expected an integer, got 2.5" in _error(["training.steps=2.5"])
    assert "optimizer.lr: expected a number" in _error(["optimizer.lr=fast"])
    assert "noise.snr: expected a list of 2 values" in _error(["noise.snr=[1, 2, 3]"])
    assert "evaluation.diagnostics: expected true or false" in _error(["evaluation.diagnostics=3"])
    assert "protocol.shells[1][0]: expected a number" in _error(["protocol.shells=[[1, 2], [x, 3]]"])


def test_bad_values_name_the_key():
    assert "network.flow: must be one of spline|affine, got 'glow'" in _error(["network.flow=glow"])
    assert "training.batch_size: must be > 0" in _error(["training.batch_size=0"])
    assert "noise.snr: range [50.0, 10.0] has lower > upper" in _error(["noise.snr=[50, 10]"])
    assert "model.name: unknown model 'ball_stik' (did you mean ball_stick?)" in _error(["model.name=ball_stik"])
    assert "protocol.shells[0]" in _error(["protocol.shells=[[1000, 3000]]"])  # s/mm² by mistake
    assert "protocol.n_b0: must be ≥ 1" in _error(["protocol.n_b0=[0, 2]"])
    assert "protocol.Delta" in _error(["protocol.delta=[30, 40]", "protocol.Delta=[10, 20]"])
    assert "protocol.bval" in _error(["protocol.kind=fixed"])
    assert "network.quantiles" in _error(["network.quantiles=[0.5, 1.5]"])
    assert "network.encoder: mlp reads a fixed measurement order" in _error(["network.encoder=mlp"])


def test_file_errors_are_one_line(tmp_path):
    assert "cannot read" in _error([], str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    assert "not valid YAML" in _error([], str(bad))
    bad.write_text("training:\n  steps: 10\n  bogus: 1\n")
    assert "training.bogus: unknown key" in _error([], str(bad))


def test_overrides_parse_yaml_values_and_scalar_ranges():
    c = load_config(None, ["training.steps=7", "optimizer.lr=1e-3", "noise.snr=30", "model.fixed.d_iso=3"])
    assert c.training.steps == 7 and c.optimizer.lr == 1e-3
    assert c.noise.snr == (30.0, 30.0)  # a single number is the range [x, x]
    assert c.model.fixed == {"d_iso": 3.0}


def test_configs_are_frozen_and_round_trip_through_json():
    c = load_config(os.path.join(CONFIGS, "tiny.yaml"))
    with pytest.raises(Exception):
        c.training.steps = 3  # frozen
    assert from_dict(to_dict(c)) == c
    assert isinstance(from_dict({}), Config)


@pytest.mark.parametrize("name", ["tiny", "ball_stick", "noddi", "sandi"])
def test_shipped_configs_load(name):
    from sbi_dmri import models

    if name != "tiny" and name not in models.available():
        pytest.skip(f"model {name} is not registered in this checkout yet")
    c = load_config(os.path.join(CONFIGS, f"{name}.yaml"))
    assert c.model.name in ("ball_stick", "noddi", "sandi")


def test_fixed_protocol_paths_resolve_against_the_config_folder(tmp_path):
    from sbi_dmri.training.protocols import FixedProtocol, build_protocol

    (tmp_path / "p.bval").write_text("0 1000 1000 2000\n")
    (tmp_path / "p.bvec").write_text("1 1 0 0\n0 0 1 0\n0 0 0 1\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("protocol:\n  kind: fixed\n  bval: p.bval\n  bvec: p.bvec\n  delta: 10\n  Delta: 30\n")
    c = load_config(str(cfg))
    p = build_protocol(c.protocol)
    assert isinstance(p, FixedProtocol) and p.n_max == 4
    assert list(p.acquisition.bvalues) == [0.0, 1.0, 1.0, 2.0]


def test_cli_train_reports_config_errors_in_one_line(capsys):
    from sbi_dmri.cli import main

    assert main(["train", os.path.join(CONFIGS, "tiny.yaml"), "--set", "training.stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sbi-dmri: error: config error: training.stepz: unknown key (did you mean training.steps?)"
