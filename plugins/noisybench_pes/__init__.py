"""PES (Bai et al., NeurIPS 2021): progressive early stopping; the whole network trains for T1 epochs, then its last block and its classifier are re-initialised and trained alone, and training goes on with the confident samples only.

The authors' ``PES_cs.py`` (PES without semi-supervised learning), in noisybench's epochs
(from 1; theirs from 0):

1. epochs 1 … T1: cross-entropy on every sample, the run's optimiser;
2. epoch T1 + 1, the refinement: the last block (a ResNet's ``layer4``) and the classifier
   are re-initialised and trained for T2 passes over the noisy training set with every
   earlier layer fixed, then the classifier alone is re-initialised and trained for T3
   passes; Adam at ``pes_lr``. The run's optimiser does not step in this epoch;
3. epochs T1 + 2 …: at the start of each, the confident samples are those whose prediction
   (mean softmax over two training-transform views, eval mode) is their noisy label; the
   epoch trains on them alone with cross-entropy weighted per class by
   w_c = mean(n_c' : n_c' > 0) / n_c (n_c: confident samples labelled c).

In the authors' code the run's optimiser keeps the tensors the refinement replaced, so the
re-initialised layers never move after it (``refined_layers=fixed``); ``trained`` lets the
run's optimiser train them too. The semi-supervised variant (``PES_semi.py``, MixMatch on
the unconfident samples) is not shipped. Records: ``weight`` = confident (0/1) in the last
selection, ``noise_score`` = 1 − its p(noisy label), ``flagged``: not confident.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from noisybench_pes.layers import parameters_of
from noisybench_pes.stages import refine, refined_modules, select

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput

CATALOG = {
    "family": "early stopping",
    "paper": "Bai, Yang, Han, Yang, Li, Mao, Niu & Liu, NeurIPS 2021",
    "code": "https://github.com/tmllab/PES",
    "checked": "hand cases of which layers are re-initialised and which move in each stage, the confident "
               "selection and its class weights, against PES_cs.py and networks/ResNet.py",
}

T1_BY_DATASET = {"cifar10": 25, "cifar100": 30}  # PES_cs.py; elsewhere the CIFAR-10 share, 25 of 200 epochs

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "T1": "epochs of plain training before the refinement (auto: 25 cifar10, 30 cifar100, else epochs/8)",
    "T2": "refinement passes of the re-initialised last block and classifier (authors: 7)",
    "T3": "refinement passes of the re-initialised classifier alone (authors: 5)",
    "pes_lr": "Adam's learning rate in the refinement (authors: 1e-4)",
    "last_block": "modules of the last block to re-initialise (auto: layer4 of a ResNet, small_cnn's and cnn9's "
                  "last convolutions), or a list of module paths",
    "selection_views": "train_views (the authors': mean softmax of two training-transform views) or eval (one "
                       "eval-transform pass)",
    "refined_layers": "fixed (the authors' code: the run's optimiser never moves them again) or trained",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"T1": "auto", "T2": 7, "T3": 5, "pes_lr": 1e-4, "last_block": "auto", "selection_views": "train_views",
            "refined_layers": "fixed"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["T1"] == "auto":
        options["T1"] = T1_BY_DATASET.get(config.get("dataset"), int(config["epochs"] * 25 / 200 + 0.5))
    checks = {"T1": lambda v: isinstance(v, int) and v >= 0,
              "T2": lambda v: isinstance(v, int) and v >= 0,
              "T3": lambda v: isinstance(v, int) and v >= 0,
              "pes_lr": lambda v: isinstance(v, (int, float)) and v > 0,
              "last_block": lambda v: v == "auto" or (isinstance(v, list) and v and all(isinstance(n, str) for n in v)),
              "selection_views": lambda v: v in ("train_views", "eval"),
              "refined_layers": lambda v: v in ("fixed", "trained")}
    for key, ok in checks.items():
        if isinstance(options[key], bool) or not ok(options[key]):
            raise ConfigError(f"config key 'pes.{key}' has a bad value: {options[key]!r} ({OPTION_HELP[key]})")


@hookimpl
def noisybench_setup(run) -> None:
    refined_modules(run)  # a model whose last block is unknown fails here, before training
    if run.options["T1"] + 1 > run.num_epochs:
        run.warn(f"pes: T1 = {run.options['T1']} leaves no epoch for the refinement in {run.num_epochs} epochs: "
                 "the run is plain cross-entropy")


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    t1 = run.options["T1"]
    if epoch == t1 + 1:
        with run.phase("refine"):
            refine(run)
    elif epoch > t1 + 1:
        with run.phase("select"):
            select(run)


def confident_loss(logits: torch.Tensor, labels: torch.Tensor, confident: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross-entropy over the batch's confident samples, Σ w_y ℓ / Σ w_y as
    torch's weighted mean (a batch without one: a zero loss)."""
    if not confident.any():
        return (logits * 0).sum()
    per_sample = F.cross_entropy(logits[confident], labels[confident], reduction="none")
    w = weights[labels[confident]]
    return (w * per_sample).sum() / w.sum()


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    t1 = run.options["T1"]
    if run.epoch == t1 + 1:  # the refinement's epoch: the authors' run optimiser does not step
        return StepOutput(torch.zeros((), device=run.device))
    logits, _ = run.model(batch.images)
    z = logits.float()
    if run.epoch <= t1:
        loss = F.cross_entropy(z, batch.labels)
    else:
        state = run.state
        confident = state["confident"].to(z.device)[batch.indices]
        loss = confident_loss(z, batch.labels, confident, state["class_weights"].to(z.device))
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    if run.epoch > t1 and run.options["refined_layers"] == "fixed":
        block, head = refined_modules(run)
        for parameter in parameters_of(block + head):
            parameter.grad = None  # not in the authors' optimiser any more: it skips them
    run.optimizer.step()
    return StepOutput(loss.detach(), logits.detach())


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    if not run.state.get("selections"):
        return {}
    confident = run.state["confident"].cpu()
    return {"weight": confident.float(), "noise_score": 1 - run.state["p_label"].float().cpu(), "flagged": ~confident}
