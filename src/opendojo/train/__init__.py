"""opendojo.train: the trainer of the FSD-style video network.

    from opendojo.train import load_config, train, load_model, predict
    result = train(load_config("configs/tiny.toml", ["train.steps=200"]), "runs/first")
    model = load_model("runs/first")

The run-folder layout (metrics.jsonl, checkpoints/, plots/, result.json) is in docs/training.md.
"""

from opendojo.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from opendojo.train.config import Config, config_from_dict, config_to_dict, load_config
from opendojo.train.inference import load_model, predict
from opendojo.train.loop import NonFiniteLossError, RunResult, train
from opendojo.train.plots import plot_run, read_metrics

__all__ = [
    "CheckpointError",
    "Config",
    "NonFiniteLossError",
    "RunResult",
    "config_from_dict",
    "config_to_dict",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_model",
    "plot_run",
    "predict",
    "read_metrics",
    "train",
]
