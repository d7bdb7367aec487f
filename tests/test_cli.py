"""CLI: each verb calls its library function; user errors are one line and exit status 2."""

import numpy as np
import pytest

from sbi_dmri import models
from sbi_dmri.acquisition import write_bvals_bvecs
from sbi_dmri.cli import main
from sbi_dmri.protocols import load_protocol
from sbi_dmri.simulators.analytic import simulate_signals

BS = ["--param", "orientation=0,0,1", "--param", "d_par=1.7", "--param", "d_iso=3", "--param", "f_stick=0.6"]


def test_models_lists_parameters_units_and_bounds(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in models.available():
        assert f"{name}:" in out or out.startswith(name)
    assert "d_par" in out and "µm²/ms" in out and "[0.1, 3]" in out


def test_simulate_prints_the_library_signals(capsys):
    assert main(["simulate", "--model", "ball_stick", "--protocol", "hcp_3shell", *BS]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    printed = np.array([float(line.split()[-1]) for line in lines])
    expected = simulate_signals(
        models.get("ball_stick"), load_protocol("hcp_3shell"),
        dict(orientation=[0, 0, 1], d_par=1.7, d_iso=3.0, f_stick=0.6),
    )[0]
    np.testing.assert_allclose(printed, expected, atol=1e-6)


def test_simulate_with_fsl_files_and_out(tmp_path, capsys):
    write_bvals_bvecs(tmp_path / "x.bval", tmp_path / "x.bvec", np.array([0.0, 2.0]), np.array([[1, 0, 0], [0, 0, 1.0]]))
    out = tmp_path / "s.txt"
    args = ["simulate", "--model", "ball_stick", "--bval", str(tmp_path / "x.bval"), "--bvec", str(tmp_path / "x.bvec"),
            "--delta", "10", "--Delta", "30", "--out", str(out), *BS]
    assert main(args) == 0
    s = np.loadtxt(out)
    # Gradient along the stick: 0.6 e^{−2·1.7} + 0.4 e^{−2·3}.
    np.testing.assert_allclose(s, [1.0, 0.6 * np.exp(-3.4) + 0.4 * np.exp(-6.0)], rtol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "--model", "nope", "--protocol", "hcp_3shell"], "unknown model"),
        (["simulate", "--model", "ball_stick", "--protocol", "hcp_3shell", "--param", "d_par=1"], "needs --param"),
        (["simulate", "--model", "ball_stick", "--protocol", "nope", *BS], "unknown protocol"),
        (["simulate", "--model", "ball_stick", "--bval", "x.bval", *BS], "missing --bvec"),
        (["simulate", "--model", "ball_stick", "--protocol", "hcp_3shell", *BS, "--param", "d_par=9"], "outside its bounds"),
        (["simulate", "--model", "ball_stick", "--protocol", "hcp_3shell", *BS[:-1], "f_stick=abc"], "not a number"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
