"""Helpers for the training tests: run the real loop in child processes.

Children share a persistent XLA compilation cache (in pytest's cache folder), so the tiny config's
train step compiles once per machine, not once per child: the end-to-end, restore, kill/resume and
data-parallel tests stay within their time budget on a 2-core CPU.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "configs", "tiny.yaml")

TRAIN_SCRIPT = """
import json, sys, time
from sbi_dmri.training.config import load_config
from sbi_dmri.training.loop import train_and_evaluate
from sbi_dmri.training import checkpoint as ck
config, workdir, hang = sys.argv[1], sys.argv[2], sys.argv[3] == "hang"
if hang:  # stand still after the first complete checkpoint, so the parent can kill -9 us there
    save = ck.TrainingCheckpoints.save_latest
    def save_then_hang(self, step, *a, **k):
        save(self, step, *a, **k)
        print("SAVED", step, flush=True)
        time.sleep(600)
    ck.TrainingCheckpoints.save_latest = save_then_hang
summary = train_and_evaluate(load_config(config, sys.argv[4:]), workdir)
print("SUMMARY " + json.dumps(summary, default=str), flush=True)
"""


@pytest.fixture(scope="session")
def child_env(pytestconfig):
    cache = pytestconfig.cache.mkdir("sbi_dmri_jax_cache")
    env = dict(os.environ)
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PLATFORMS="cpu", TQDM_DISABLE="1")
    return env


def run_child(code: str, args, env, timeout=400) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def train_child(workdir, env, overrides=()) -> dict:
    out = run_child(TRAIN_SCRIPT, [TINY, workdir, "run", *overrides], env)
    line = [ln for ln in out.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


def train_child_and_kill(workdir, env, overrides=()) -> int:
    """Start training, kill -9 it right after its first checkpoint; return that checkpoint's step."""
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, TINY, str(workdir), "hang", *overrides],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("SAVED"):
                step = int(line.split()[1])
                break
        else:
            raise AssertionError("training child ended without saving a checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        return step
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
