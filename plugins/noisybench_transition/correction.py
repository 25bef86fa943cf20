"""What ``forward`` and ``backward`` share: their options, where T comes from, the first
model's stage, the loss step that keeps each sample's noise score, and the records.

With ``transition=estimate`` a run has two stages, the authors' two runs in one: for
``estimate_epochs`` epochs the network trains with plain (clipped) cross-entropy (T = I);
at the start of the next epoch one eval pass over the training images gives the softmax
outputs from which T̂ is estimated (``matrix.anchor_transition``); then the corrected loss
trains, continuing from the first stage, or (``restart=true``, as the authors train a new
model) from the network's first weights with a fresh optimiser state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.noise import parse_noise
from noisybench_transition.losses import clipped_probabilities, label_noise_posterior
from noisybench_transition.matrix import (CLASS_CONDITIONAL, anchor_transition, estimation_error, known_transition,
                                          read_transition)

SOURCES = ("estimate", "known", "file")
OPTION_HELP = {
    "transition": "where T comes from: estimate (anchor points of a first model trained with cross-entropy), "
                  "known (the run's synthetic noise), file (transition_file)",
    "transition_file": "a CSV file holding T, one row per true class, each summing to 1 (transition=file)",
    "estimate_epochs": "epochs of plain cross-entropy that train the first model before T is estimated "
                       "(transition=estimate; auto: one past the step schedule's first lr decay, else two thirds)",
    "anchor_percentile": "class i's anchor is the sample with the highest p(i|x) below this percentile of p(i|x) "
                         "(auto: 97, and 100, the arg-max, on cifar100: the authors' values)",
    "restart": "after estimating T, re-initialise the network to its first weights with a fresh optimiser state "
               "(as the authors train a second model); false: go on training the first model with the corrected loss",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"transition": "estimate", "transition_file": None, "estimate_epochs": "auto", "anchor_percentile": "auto",
            "restart": False}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    method = config.get("method") or "forward"
    source = options["transition"]
    if source not in SOURCES:
        raise ConfigError(f"config key '{method}.transition' must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "known" and parse_noise(config.get("noise")).type not in CLASS_CONDITIONAL:
        raise ConfigError(f"{method}.transition=known needs class-conditional synthetic noise "
                          f"({', '.join(CLASS_CONDITIONAL)}), not noise={config.get('noise')}; estimate T or give a file")
    path = options["transition_file"]
    if (source == "file") != (path is not None):
        raise ConfigError(f"config key '{method}.transition_file' is a CSV path exactly when {method}.transition=file")
    if path is not None:
        read_transition(path)  # a bad file fails here, before anything is built
    if options["estimate_epochs"] == "auto":
        options["estimate_epochs"] = first_model_epochs(config)  # resolved into the saved config
    epochs = options["estimate_epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1 \
            or (source == "estimate" and epochs >= config["epochs"]):
        raise ConfigError(f"config key '{method}.estimate_epochs' must be an integer from 1 to epochs - 1 "
                          f"({config['epochs'] - 1}), got {epochs!r}")
    if options["anchor_percentile"] == "auto":
        options["anchor_percentile"] = 100.0 if config.get("dataset") == "cifar100" else 97.0
    q = options["anchor_percentile"]
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 100:
        raise ConfigError(f"config key '{method}.anchor_percentile' must be a number in (0, 100], got {q!r}")
    options["anchor_percentile"] = float(q)
    if not isinstance(options["restart"], bool):
        raise ConfigError(f"config key '{method}.restart' must be true or false, got {options['restart']!r}")


def first_model_epochs(config: dict) -> int:
    """``estimate_epochs=auto``: one epoch past the step schedule's first learning-rate decay
    (the authors' first model runs its whole schedule; a first model that has trained at the
    decayed rate estimates T far better, see docs/methods/forward.md), else two thirds of the
    epochs; at most epochs − 1."""
    schedule, epochs = config.get("lr_schedule") or {}, config["epochs"]
    decays = schedule.get("milestones") or ([schedule["step_every"]] if schedule.get("step_every") else [])
    if schedule.get("name", "step") == "step" and decays and min(decays) + 1 < epochs:
        return min(decays) + 1
    return max(1, min(epochs - 1, 2 * epochs // 3))


def reference_transition(run) -> np.ndarray | None:
    """The T of the run's synthetic noise, if the noise is class-conditional (else None)."""
    spec = parse_noise(run.config.get("noise"))
    if spec.type not in CLASS_CONDITIONAL:
        return None
    return known_transition(spec, run.num_classes, run.config["dataset"], run.class_names)


@hookimpl
def noisybench_setup(run) -> None:
    o = run.options
    if o["transition"] == "known":
        start = reference_transition(run)
    elif o["transition"] == "file":
        start = read_transition(o["transition_file"], run.num_classes)
    else:
        start = np.eye(run.num_classes)  # the first stage: cross-entropy
        if o["restart"]:
            model = run.accelerator.unwrap_model(run.model)
            run.scratch["first_weights"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    run.state["transition"] = torch.as_tensor(start, dtype=torch.float64)
    run.state["estimated"] = 0
    run.state["noise_score"] = torch.zeros(run.num_train)


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    o = run.options
    if o["transition"] != "estimate":
        if epoch == 1:
            log_transition(run, run.state["transition"].cpu().numpy())
        return
    if run.state["estimated"] or epoch <= o["estimate_epochs"]:
        if run.state["estimated"]:
            run.scratch.pop("first_weights", None)  # a run resumed after its restart
        return
    with run.phase("estimate_transition"):
        logits, _ = run.predict()
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        estimate = anchor_transition(probs, o["anchor_percentile"])
    run.state["transition"] = torch.as_tensor(estimate, dtype=torch.float64)
    run.state["estimated"] = 1
    log_transition(run, estimate)
    if o["restart"]:
        restart(run)


def log_transition(run, matrix: np.ndarray) -> None:
    """T, its condition number and, under class-conditional synthetic noise, its error
    ‖T − T_true‖₁/‖T_true‖₁ into this epoch's history entry of metrics.json."""
    truth = reference_transition(run)
    run.log(transition_matrix=np.round(matrix, 6).tolist(), transition_source=run.options["transition"],
            transition_error=None if truth is None else estimation_error(matrix, truth),
            transition_condition=float(np.linalg.cond(matrix)))


def restart(run) -> None:
    """The network back to its first weights, its optimiser's state (momentum) cleared."""
    first = run.scratch.pop("first_weights")
    run.accelerator.unwrap_model(run.model).load_state_dict(first)
    getattr(run.optimizer, "optimizer", run.optimizer).state.clear()


def corrected_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                   loss: Callable, loss_matrix: Callable) -> torch.Tensor:
    """The batch's ``loss(p̂, labels, loss_matrix(T))``; keeps each sample's noise score."""
    transition = run.state["transition"]  # float64, on the host
    if run.scratch.get("matrix_of") is not transition:  # T set, estimated or restored: derive once
        run.scratch["matrix_of"] = transition
        run.scratch["transition"] = transition.float().to(logits.device)
        run.scratch["loss_matrix"] = loss_matrix(transition).float().to(logits.device)
    p = clipped_probabilities(logits)
    score = label_noise_posterior(p.detach(), labels, run.scratch["transition"])
    if run.accelerator.num_processes > 1:  # every process keeps every sample's score
        indices, score = run.collect(indices, score)
    run.state["noise_score"] = run.state["noise_score"].to(score.device)
    run.state["noise_score"][indices] = score
    return loss(p, labels, run.scratch["loss_matrix"])


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    score = run.state["noise_score"].float().cpu()
    return {"noise_score": score, "flagged": score > 0.5}
