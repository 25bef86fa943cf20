"""Backward loss correction (Patrini et al., CVPR 2017): the cross-entropy of every class weighted by the row of T⁻¹ of the noisy label, an unbiased estimate of the clean loss.

The loss of a batch is mean −Σ_j (T⁻¹)_{ỹ j} log p̂_j, p̂ the softmax clipped to
[1e-7, 1 − 1e-7] as the authors' Keras code (the clip bounds the loss, which the negative
entries of T⁻¹ leave unbounded below). T comes from where ``forward``'s does
(``noisybench_transition``); the records are the same.
"""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench_transition.correction import OPTION_HELP, corrected_loss
from noisybench_transition.correction import noisybench_check_options as noisybench_check_options
from noisybench_transition.correction import noisybench_config_defaults as noisybench_config_defaults
from noisybench_transition.correction import noisybench_epoch_start as noisybench_epoch_start
from noisybench_transition.correction import noisybench_sample_outputs as noisybench_sample_outputs
from noisybench_transition.correction import noisybench_setup as noisybench_setup
from noisybench_transition.losses import backward_loss

__all__ = ["OPTION_HELP", "CATALOG", "backward_loss", "inverse"]

CATALOG = {
    "family": "loss correction",
    "paper": "Patrini, Rozza, Menon, Nock & Qu, CVPR 2017",
    "code": "https://github.com/giorgiop/loss-correction",
    "checked": "the loss and its gradient against hand values and finite differences (clip at p → 0 and p → 1, "
               "one class) with T⁻¹ computed as the authors' np.linalg.inv; T's estimate shared with forward",
}


def inverse(transition: torch.Tensor) -> torch.Tensor:
    """T⁻¹ (in float64, as numpy's inv), or a clear error when T is singular."""
    try:
        return torch.linalg.inv(transition.double()).to(transition.dtype)
    except RuntimeError:  # torch.linalg.LinAlgError
        raise ConfigError("backward: the transition matrix is singular, so it has no inverse; use forward, "
                          "or another T") from None


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return corrected_loss(run, logits, labels, indices, backward_loss, loss_matrix=inverse)
