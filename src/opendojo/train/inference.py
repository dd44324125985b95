"""Run a trained network: load it from a run folder and predict on a batch of clips."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from opendojo.models import FSDConfig
from opendojo.train.batches import frames_to_input
from opendojo.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from opendojo.train.precision import apply_precision

__all__ = ["load_model", "predict"]


def load_model(
    run_dir: str | Path, checkpoint: str | Path | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """The network of a run, with the weights of ``checkpoint`` (default: the newest), in eval mode.

    The model is rebuilt from the checkpoint's own signature (shape and recipe), so a CFloat-trained
    network comes back converted, with its bias-policy state. ``model.config`` is its ``FSDConfig``.
    """
    run_dir = Path(run_dir)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise FileNotFoundError(
            f"run folder {str(run_dir)!r} has no checkpoints (expected "
            f"{str(run_dir / 'checkpoints')!r}/step_*)"
        )
    ckpt = load_checkpoint(path)
    signature = ckpt.trainer_state.get("signature") or _signature_from_manifest(path)
    cfg = dict(signature["config"])
    cfg["backbone_channels"] = tuple(cfg["backbone_channels"])
    device = torch.device(device)
    from opendojo.models import fsd_net

    model = fsd_net(FSDConfig(**cfg)).to(device)
    model, _ = apply_precision(model, signature["precision"], device)
    try:
        model.load_state_dict(ckpt.model_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit its own signature: {e}") from None
    return model.eval()


def _signature_from_manifest(path: Path) -> dict:
    import json

    return json.loads((path / "manifest.json").read_text())["signature"]


@torch.no_grad()
def predict(model: nn.Module, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictions for uint8 clips ``[B, cams, T, H, W, 3]`` (as ``ClipDataset`` yields them, batched).

    Returns CPU tensors: ``occupancy`` probabilities ``[B, T, G, G]`` in [0, 1], ``trajectory``
    ``[B, T, K, 2]`` metres, ``speed`` ``[B, T]`` m/s, ``steering`` ``[B, T]`` rad.
    """
    device = next(model.parameters()).device
    out = model(frames_to_input(frames, device))
    out["occupancy"] = torch.sigmoid(out["occupancy"].float())
    return {k: v.float().cpu() for k, v in out.items()}
