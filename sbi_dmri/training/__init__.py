"""Training amortized posteriors: config schema, on-the-fly simulation, the loop, checkpoints, tracking.

    from sbi_dmri.training import load_config, train_and_evaluate
    summary = train_and_evaluate(load_config("configs/ball_stick.yaml", ["training.steps=2000"]), "runs/bs")

Restore a trained network for inference with `sbi_dmri.pretrained.load_pretrained(workdir)`.
"""

from .config import Config as Config
from .config import ConfigError as ConfigError
from .config import load_config as load_config
from .loop import train_and_evaluate as train_and_evaluate
