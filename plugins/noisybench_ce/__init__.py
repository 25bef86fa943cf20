"""Cross-entropy on the noisy labels: the baseline every method is compared with.

It publishes each training sample's cross-entropy in the last epoch it was trained on as
``noise_score`` (the small-loss criterion every selection method builds on), so the plain
baseline has a detection AUC to compare the others' with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl


# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "baseline",
    "paper": None,
    "code": None,
    "checked": "PyTorch's cross-entropy on the noisy labels: the baseline of every method's cost and accuracy",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {"label_smoothing": "cross-entropy's label smoothing (0: none)"}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"label_smoothing": 0.0}


@hookimpl
def noisybench_setup(run) -> None:
    run.state["last_loss"] = torch.zeros(run.num_train)


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():  # the per-sample loss for noise_score, kept until the epoch's end
        each = F.cross_entropy(logits.float(), labels, label_smoothing=run.options["label_smoothing"], reduction="none")
        run.scratch.setdefault("ce_losses", []).append((indices.detach(), each))
    return F.cross_entropy(logits.float(), labels, label_smoothing=run.options["label_smoothing"])


@hookimpl
def noisybench_epoch_end(run) -> None:
    """Gather the epoch's per-sample losses from every process (a collective) into the state."""
    parts = run.scratch.pop("ce_losses", [])
    if not parts:
        return
    indices, values = run.collect(torch.cat([i for i, _ in parts]), torch.cat([v for _, v in parts]))
    run.state["last_loss"] = run.state["last_loss"].to(values.device)
    run.state["last_loss"][indices] = values


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    return {"noise_score": run.state["last_loss"].cpu()}
