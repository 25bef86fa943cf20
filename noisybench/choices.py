"""What a run decides for itself before it trains: ``model.name=auto``, the mixed precision,
the device settings, and the console line that says what was chosen and why.

Called by the loop (engine.py) when it builds a run; the record (results.py) keeps the choices.
"""

from __future__ import annotations

from typing import Any

import torch

from noisybench.datasets import DataSplits
from noisybench.errors import ConfigError


def choose(config: dict[str, Any], splits: DataSplits, auto_size: bool) -> dict[str, Any]:
    """Resolve ``model.name=auto`` (``small_cnn`` for inputs under 64 pixels, else
    ``resnet18``) and describe what was chosen for the console line and the record."""
    from noisybench.datasets.images import SMALL_IMAGE

    side = int(splits.train_eval[0][0].shape[-1])
    model = config["model"]
    auto_model = model["name"] == "auto"
    if auto_model:
        model["name"] = "small_cnn" if side < SMALL_IMAGE else "resnet18"
    recipe = config["recipe"]
    why = "pretrained weights" if recipe == "finetune" else "no pretrained weights"
    size = ""
    if auto_size:
        size = (" (data.image_size=auto: the training images' median short side, small-image pipeline under 64)"
                if side < SMALL_IMAGE else " (data.image_size=auto: photo pipeline)")
    optimizer = config["optimizer"]
    line = (f"choices: model {model['name']}{' (auto)' if auto_model else ''}, {side}-pixel inputs{size}; "
            f"recipe {recipe} ({why}): {config['epochs']} epochs, batch {config['batch_size']}, "
            f"{optimizer['name']} lr {optimizer['lr']:g}, weight decay {optimizer['weight_decay']:g}, "
            f"{schedule_words(config['lr_schedule'])}")
    return {"model": model["name"], "model_auto": auto_model, "input_size": side, "image_size_auto": auto_size,
            "recipe": recipe, "line": line}


def schedule_words(schedule: dict[str, Any]) -> str:
    """The learning-rate schedule in words, for the choices line."""
    steps = (f"{schedule['name']} schedule to lr {schedule['min_lr']:g}" if schedule["name"] != "step"
             else f"lr x{schedule['gamma']:g} after epochs {schedule['milestones']}" if schedule["milestones"]
             else f"lr x{schedule['gamma']:g} every {schedule['step_every']} epochs" if schedule["step_every"]
             else "constant lr")
    if schedule["warmup_epochs"]:
        steps += f" after {schedule['warmup_epochs']} warm-up epochs from {schedule['warmup_lr']:g}"
    return steps


def choose_mixed_precision(setting: str) -> str:
    """``auto`` is bf16 on a GPU that supports it and full precision elsewhere."""
    cuda = torch.cuda.is_available()
    if setting == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if setting == "fp16" and not cuda:
        raise ConfigError("mixed_precision=fp16 needs a GPU; use bf16 or no on the CPU")
    return setting


def device_settings(config: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """``model.channels_last`` resolved (auto: on with CUDA, where convolutions run fastest
    in NHWC), and cuDNN's autotuner on with CUDA (fixed input sizes: it pays after a step)."""
    model = config["model"]
    channels_last = cuda if model["channels_last"] == "auto" else bool(model["channels_last"])
    if cuda:
        torch.backends.cudnn.benchmark = True
    return {"channels_last": channels_last, "compile": bool(model["compile"])}
