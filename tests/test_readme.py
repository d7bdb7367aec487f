"""The README's Quickstart holds exactly two commands, and CI runs exactly those."""

import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quickstart_has_two_commands_that_ci_reads():
    awk = "/^## Quickstart/{q=1} q&&/^```/{n++; next} q&&n==1{print} n>=2{exit}"
    cmds = subprocess.run(["awk", awk, str(ROOT / "README.md")], capture_output=True, text=True, check=True)
    lines = cmds.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('pip install -e ".[dev]"') and "sbi-dmri" in lines[0]
    assert "pytest" in lines[1]
    assert awk in (ROOT / ".ci" / "run").read_text()
