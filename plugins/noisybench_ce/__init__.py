"""Cross-entropy on the noisy labels: the baseline every method is compared with."""

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
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, label_smoothing=run.options["label_smoothing"])
