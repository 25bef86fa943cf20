"""Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) through the cleanlab library: find the label issues from out-of-sample probabilities, then train on the cleaned labels.

Before the first epoch (``noisybench_epoch_start`` of epoch 1, so that ``--dry-run`` trains
nothing) the run trains ``folds`` cross-entropy fold runs of its own config (``folds.py``,
the fold runs of ``noisybench export --folds``; ``fold_epochs`` epochs each, default the
run's), gathers every training sample's out-of-sample probabilities, and lets
``cleanlab.filter.find_label_issues`` flag the issues (``filter_by``; ``cleaning.py``). The
run then trains its own model from scratch with cross-entropy on the cleaned labels:
``prune`` leaves the flagged samples out (their loss counts zero, each batch's loss is
divided by its full size, so an epoch moves as far as one over the kept samples alone) and,
with ``class_weights`` (cleanlab's ``CleanLearning.fit``), weights a kept sample of class k
by 1 / P(ỹ = k | y* = k); ``relabel`` trains every sample, a flagged one towards its
out-of-sample prediction.
The cost is K fold runs on (K − 1)/K of the data plus this run.

Records: ``flagged`` = cleanlab's issues, ``noise_score`` = 1 − p(noisy label) out of sample,
``weight`` = the loss weight (0 pruned), ``predicted_label`` = the out-of-sample argmax, and in
``relabel`` mode ``corrected_label``; ``phase_seconds.folds`` = the cleaning stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench_cleanlab.cleaning import ACTIONS, FILTERS, clean

CATALOG = {
    "family": "data-centric cleaning",
    "paper": "Northcutt, Jiang & Chuang, JAIR 2021",
    "code": "https://github.com/cleanlab/cleanlab",
    "checked": "on hand-built probability matrices with known issues the flagged set is cleanlab's "
               "find_label_issues and the confident joint counted by hand, and the pruned training set is "
               "exactly its complement; fold probabilities are those of each fold run's own held-out scores",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "folds": "K: cross-validation folds for the out-of-sample probabilities (the CL paper's CIFAR runs: 4)",
    "fold_epochs": "epochs of each fold run (null: the run's epochs)",
    "filter_by": "cleanlab's rule: prune_by_noise_rate (its default, the paper's PBNR), prune_by_class, both, "
                 "confident_learning, predicted_neq_given, low_normalized_margin, low_self_confidence",
    "action": "prune: train without the flagged samples; relabel: train them towards the out-of-sample prediction",
    "class_weights": "prune: weight class k by 1/P(noisy k | true k), cleanlab's noise-matrix estimate (CleanLearning.fit)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"folds": 4, "fold_epochs": None, "filter_by": "prune_by_noise_rate", "action": "prune",
            "class_weights": True}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    o = options

    def count(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    checks = {"folds": count(o["folds"], 2), "fold_epochs": o["fold_epochs"] is None or count(o["fold_epochs"], 1),
              "filter_by": o["filter_by"] in FILTERS, "action": o["action"] in ACTIONS,
              "class_weights": isinstance(o["class_weights"], bool)}
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"config key 'cleanlab.{key}' has a bad value: {o[key]!r} ({OPTION_HELP[key]})")
    if config["data"]["cv_folds"]:
        raise ConfigError("cleanlab trains its own fold runs (cleanlab.folds); data.cv_folds must be 0 for it")


@hookimpl
def noisybench_setup(run) -> None:
    n = run.num_train
    run.state.update(cleaned=False, flagged=torch.zeros(n, dtype=torch.bool), noise_score=torch.zeros(n),
                     label=run.noisy_labels.clone(), keep=torch.ones(n), predicted=run.noisy_labels.clone())


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    """The cleaning stage, once, before the first training step (a resumed run has it in its state)."""
    if run.state["cleaned"]:
        return
    from noisybench.nested import random_streams_kept
    from noisybench_cleanlab.folds import FOLDS_DIR, fold_probabilities

    if run.output is None:
        raise ConfigError("cleanlab writes its fold runs into the run folder; this run has none")
    o = run.options
    with run.phase("folds"), random_streams_kept():  # the run's own training draws as if no fold had run
        probs = fold_probabilities(run, run.output / FOLDS_DIR, o["folds"], o["fold_epochs"])
    found = clean(run.noisy_labels.numpy(), probs, o["filter_by"], o["action"], o["class_weights"])
    kept = int((found.keep > 0).sum())
    if kept == 0:
        raise ConfigError(f"cleanlab flagged every one of the {run.num_train} training samples: nothing is left "
                          "to train on (more fold_epochs, or another filter_by)")
    run.state.update(cleaned=True, flagged=torch.as_tensor(found.flagged), noise_score=torch.as_tensor(found.noise_score),
                     label=torch.as_tensor(found.label), keep=torch.as_tensor(found.keep, dtype=torch.float32),
                     predicted=torch.as_tensor(found.predicted))
    run.log(cleanlab_flagged=int(found.flagged.sum()), cleanlab_kept=kept)


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    keep = run.state["keep"].to(logits.device)[indices]
    labels = run.state["label"].to(logits.device)[indices]
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (keep * losses).sum() / len(indices)


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    s = run.state
    outputs = {"flagged": s["flagged"], "noise_score": s["noise_score"].float(), "weight": s["keep"].float(),
               "predicted_label": s["predicted"]}
    if run.options["action"] == "relabel":
        outputs["corrected_label"] = s["label"]
    return outputs
