"""The optimiser and the learning-rate schedule: built from the config, stepped after each
epoch, shared by every network of a run, and stretched when a resumed run's ``epochs`` grow.

Called by the loop (engine.py) when it builds a run and a method's further networks, and by
persistence.py when it restores or extends a run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch


def make_optimizer(opt: dict[str, Any], model: torch.nn.Module, cuda: bool = False) -> torch.optim.Optimizer:
    """SGD with momentum (the papers' choice) or AdamW (lr and weight decay only); on a GPU
    the fused kernels (one launch per step for all parameters, the same update)."""
    fused = {"fused": True} if cuda else {}
    if opt["name"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"], **fused)
    return torch.optim.SGD(model.parameters(), lr=opt["lr"], momentum=opt["momentum"],
                           weight_decay=opt["weight_decay"], nesterov=opt["nesterov"], **fused)


def lr_milestones(config: dict[str, Any]) -> list[int]:
    """Epochs after which the learning rate is multiplied by ``lr_schedule.gamma``."""
    schedule = config["lr_schedule"]
    if schedule["milestones"] is not None:
        return [int(m) for m in schedule["milestones"]]
    step = schedule["step_every"]
    return list(range(step, config["epochs"], step)) if step and step > 0 else []


def make_scheduler(config: dict[str, Any], optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule, stepped once after each epoch. ``step`` without warm-up is
    torch's MultiStepLR (the papers' schedules, as before); every other schedule, or a
    warm-up, comes from timm's factory (``create_scheduler_v2``, stepped by epoch)."""
    schedule = config["lr_schedule"]
    if schedule["name"] == "step" and not schedule["warmup_epochs"]:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=lr_milestones(config),
                                                    gamma=schedule["gamma"])
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer, sched="multistep" if schedule["name"] == "step" else schedule["name"],
        # timm applies milestone m from 0-based epoch m - 1; +1 keeps "lr x gamma after epoch m" as MultiStepLR's
        num_epochs=config["epochs"], decay_milestones=[m + 1 for m in lr_milestones(config)] or [config["epochs"] + 2],
        decay_rate=schedule["gamma"], min_lr=schedule["min_lr"], warmup_lr=schedule["warmup_lr"],
        warmup_epochs=schedule["warmup_epochs"], step_on_epochs=True)
    return scheduler


def step_scheduler(scheduler: Any, epochs_done: int) -> None:
    """After epoch ``epochs_done`` (1-based): torch's schedulers count their own steps, timm's
    are told the index of the next epoch."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        scheduler.step()
    else:
        scheduler.step(epochs_done)


def follow_schedule(optimizer: torch.optim.Optimizer, main: torch.optim.Optimizer) -> None:
    """A further network's learning rate is the run's (one schedule for all)."""
    for group, leading in zip(optimizer.param_groups, main.param_groups):
        group["lr"] = leading["lr"]


def load_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    """A checkpointed schedule back in ``scheduler``."""
    scheduler.load_state_dict(state)
    if isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR):
        scheduler.milestones = Counter(scheduler.milestones)  # JSON keeps a plain dict


def schedule_for_epochs(scheduler: Any, config: dict[str, Any], optimizer: torch.optim.Optimizer,
                        epochs_done: int, saved_epochs: int | None) -> Any:
    """The schedule a resumed run continues with when ``epochs`` grew from ``saved_epochs``:
    the one a straight run of the new length would be at after ``epochs_done`` epochs."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.MultiStepLR):
        if epochs_done and saved_epochs is not None and config["epochs"] != saved_epochs:
            fresh = make_scheduler(config, optimizer)  # the schedule of the new length
            step_scheduler(fresh, epochs_done)
            return fresh
        return scheduler
    # The checkpointed scheduler keeps the milestones of the epochs it was started with, and
    # a decay at the old last epoch was skipped: apply the schedule for the new epochs.
    milestones = Counter(lr_milestones(config))
    if milestones != scheduler.milestones:
        scheduler.milestones = milestones
        decays = sum(count for m, count in milestones.items() if m <= scheduler.last_epoch)
        for group, lr in zip(optimizer.param_groups, scheduler.base_lrs):
            for _ in range(decays):  # as MultiStepLR multiplies, so a straight run's values are met exactly
                lr *= scheduler.gamma
            group["lr"] = lr
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return scheduler
