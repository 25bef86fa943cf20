"""Forward loss correction (Patrini et al., CVPR 2017): cross-entropy of the noisy label under the model's posterior pushed through the transition matrix T.

The loss of a batch is mean −log (p̂ᵀT)_ỹ, p̂ the softmax clipped to [1e-7, 1 − 1e-7] as the
authors' Keras code. T is estimated (default) by the anchor-point rule from a first model
trained with cross-entropy in the run's first ``estimate_epochs`` epochs, or is the run's
known synthetic noise, or a file (``noisybench_transition``). Records: T, its condition
number and, under class-conditional synthetic noise, its error in the history of
metrics.json; per sample ``noise_score`` = P(true label ≠ ỹ | x) by Bayes' rule with T,
``flagged`` where it exceeds 0.5.
"""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench_transition.correction import OPTION_HELP, corrected_loss
from noisybench_transition.correction import noisybench_check_options as noisybench_check_options
from noisybench_transition.correction import noisybench_config_defaults as noisybench_config_defaults
from noisybench_transition.correction import noisybench_epoch_start as noisybench_epoch_start
from noisybench_transition.correction import noisybench_sample_outputs as noisybench_sample_outputs
from noisybench_transition.correction import noisybench_setup as noisybench_setup
from noisybench_transition.losses import forward_loss

__all__ = ["OPTION_HELP", "CATALOG", "forward_loss"]

CATALOG = {
    "family": "loss correction",
    "paper": "Patrini, Rozza, Menon, Nock & Qu, CVPR 2017",
    "code": "https://github.com/giorgiop/loss-correction",
    "checked": "the loss and its gradient against hand values and finite differences (clip at p → 0 and p → 1, "
               "one class); T's anchor-point estimate (97th percentile, models.py NoiseEstimator) on a case "
               "with a known T; the known T of each noise kind against the authors' build_uniform_P",
}


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return corrected_loss(run, logits, labels, indices, forward_loss, loss_matrix=lambda t: t)
