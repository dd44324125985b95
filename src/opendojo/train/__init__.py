"""opendojo.train: the trainer of the FSD-style video network.

    from opendojo.train import load_config, train, load_model, predict
    result = train(load_config("configs/tiny.toml", ["train.steps=200"]), "runs/first")
    model = load_model("runs/first")

The run-folder layout (metrics.jsonl, checkpoints/, plots/, result.json) is in docs/training.md.
The names below are imported on first use, so ``opendojo.train.config`` and the ``dojo`` parser load
without torch.
"""

import importlib

_EXPORTS = {
    "CheckpointError": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "Config": "config",
    "config_from_dict": "config",
    "config_to_dict": "config",
    "load_config": "config",
    "load_model": "inference",
    "predict": "inference",
    "NonFiniteLossError": "loop",
    "RunResult": "loop",
    "train": "loop",
    "read_metrics": "metrics",
    "plot_run": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'opendojo.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"opendojo.train.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
