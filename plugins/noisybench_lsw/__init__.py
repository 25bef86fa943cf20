"""LSW: learn a weight per training sample by meta-learning on a clean set (2024, Algorithm 1).

Every sample has a weight alpha_i in [0, 1], 0.5 at first, kept by dataset index. Each step
trains on sum alpha_i L_i / sum alpha_i; from ``start_epoch`` a clean batch of
``clean_batch_size`` gives d L_clean(Theta'(alpha)) / d alpha through a differentiable SGD
step (meta.py: ``meta_gradient=jvp`` by the chain rule and one forward-mode pass, or
``higher`` through the step's graph; both exact), alpha takes a step of size ``weight_lr``
normalised by a sigmoid (``weight_rule``), and Theta moves by the weighted-loss gradient with alpha as it was.
Samples with alpha < ``threshold`` are judged mislabelled.

Needs a clean set: setting ``clean`` gives one (Clothing1M's clean train, Food-101N's
verified-correct rows, or ``data.clean_fraction`` held out under synthetic noise).
``mode=retrain`` trains from scratch on the samples a finished run kept
(``weights_from``), with or without their weights, plus the clean set.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from accelerate.utils import send_to_device

from noisybench import hookimpl
from noisybench.config import check_nullable
from noisybench.errors import ConfigError
from noisybench.run import StepOutput
from noisybench_lsw.meta import full_meta_step, head_meta_step, jvp_meta_step, update_weights, weighted_loss

META_GRADIENTS = {"jvp": jvp_meta_step, "higher": full_meta_step}


# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "meta-weighting",
    "paper": "Hoang, Tran, Rana, Gupta & Venkatesh, 2024",
    "code": None,
    "checked": "the meta-gradient against finite differences, higher and torch.func in float64; the printed and the "
               "accumulating weight rules by hand; flipped samples losing weight on a separable toy",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "start_epoch": "first epoch whose steps learn the weights (two epochs of delay, section 3.2)",
    "weight_lr": "eta_alpha, the weights' learning rate (the paper gives none)",
    "weight_rule": "logit: alpha = sigmoid(v), v accumulates (the text); printed: Algorithm 1 as printed",
    "clean_batch_size": "|B^c|, clean samples per meta-step",
    "threshold": "alpha at or above it counts as clean (records, retrain)",
    "meta_layers": "all: the exact meta-gradient; head: through the classifier's step only (approximate)",
    "meta_gradient": "jvp (one forward-mode pass) or higher (the reference); both exact",
    "mode": "joint: learn weights while training; retrain: train on a finished run's kept samples",
    "weights_from": "mode=retrain: the finished lsw run folder whose weights are used",
    "retrain_weighted": "mode=retrain: weight the kept samples by alpha",
    "retrain_clean": "mode=retrain: add a clean batch to each step",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {
        "start_epoch": 3,  # weights learn from the third epoch: two epochs of delay, as §3.2
        "weight_lr": 20.0,  # eta_alpha: the paper gives no value; noisybench's own choice
        "weight_rule": "logit",
        "clean_batch_size": 250,
        "threshold": 0.3,
        "meta_layers": "all",
        "meta_gradient": "jvp",  # exact either way: jvp (one forward-mode pass) or higher (the reference)
        "mode": "joint",
        "weights_from": None,
        "retrain_weighted": True,
        "retrain_clean": True,
    }


def distributed_sum(run):
    """A differentiable all-reduce over the processes, or the identity for one process."""
    if run.accelerator.num_processes == 1:
        return lambda t: t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce


def clean_batches(run):
    """An endless stream of shuffled clean batches for this epoch, seeded by (seed, epoch,
    process): different on each process, and the same again when a run resumes."""
    seed = (run.config["seed"] * 100_003 + run.epoch) * 1_000 + run.accelerator.process_index
    loader = run.loader(run.clean_set(), run.options["clean_batch_size"], shuffle=True, seed=seed)
    while True:
        for images, labels, _ in loader:
            yield send_to_device((images, labels), run.device, non_blocking=True)  # images may be a list (gpu decoder)


def load_kept_weights(run) -> torch.Tensor:
    """alpha of each training sample from a finished run's samples.csv."""
    source = run.options["weights_from"]
    if not source:
        raise ConfigError("lsw.mode=retrain needs lsw.weights_from=RUN_DIR, a finished lsw run on the same data")
    path = Path(source) / "samples.csv"
    if not path.is_file():
        raise ConfigError(f"lsw.weights_from: no samples.csv in {source}")
    table = pd.read_csv(path)
    if not {"index", "noisy_label", "weight"} <= set(table) or len(table) != run.num_train:
        raise ConfigError(f"{path}: not the per-sample table of an lsw run on this training set")
    table = table.sort_values("index")  # rows may have been re-sorted (e.g. by weight)
    if not (np.array_equal(table["index"], np.arange(run.num_train))
            and np.array_equal(table["noisy_label"], run.noisy_labels.numpy())):
        raise ConfigError(f"{path}: not the per-sample table of an lsw run on this training set")
    return torch.tensor(table["weight"].to_numpy(), dtype=torch.float32)


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    o = options
    check_nullable("lsw", o, {"weights_from": str})
    if o["weight_rule"] not in ("logit", "printed"):
        raise ConfigError(f"lsw.weight_rule='{o['weight_rule']}': expected logit or printed")
    if o["meta_layers"] not in ("all", "head"):
        raise ConfigError(f"lsw.meta_layers='{o['meta_layers']}': expected all or head")
    if o["meta_gradient"] not in ("jvp", "higher"):
        raise ConfigError(f"lsw.meta_gradient='{o['meta_gradient']}': expected jvp or higher")
    if o["mode"] not in ("joint", "retrain"):
        raise ConfigError(f"lsw.mode='{o['mode']}': expected joint or retrain")
    if config["optimizer"]["name"] != "sgd":
        raise ConfigError(f"lsw differentiates an SGD step; optimizer.name={config['optimizer']['name']} "
                          "(e.g. AdamW) is not supported")


def check_meta_run(run, method: str) -> None:
    """What a differentiable SGD step needs of a run: an SGD optimiser, no fp16, a clean set
    (shared with ``mwnet``)."""
    optimizer = getattr(run.optimizer, "optimizer", run.optimizer)
    if not isinstance(optimizer, torch.optim.SGD):
        raise ConfigError(f"{method} differentiates an SGD step; {type(optimizer).__name__} (e.g. AdamW) is not "
                          "supported")
    if run.accelerator.mixed_precision == "fp16":
        raise ConfigError(f"{method} supports mixed_precision no or bf16: an fp16 meta-gradient would need its own "
                          "loss scaling")
    try:
        run.clean_set()
    except ConfigError as exc:
        raise ConfigError(f"{method} needs a clean set to learn weights on: {exc}") from None


@hookimpl
def noisybench_setup(run) -> None:
    o = run.options
    check_meta_run(run, "lsw")
    if o["mode"] == "joint" and o["start_epoch"] > run.num_epochs:
        run.warn(f"lsw.start_epoch={o['start_epoch']} is past the last epoch ({run.num_epochs}): no weight is ever "
                 "learned; the run is cross-entropy")
    if o["mode"] == "retrain":
        run.state["alpha"] = load_kept_weights(run)
    else:
        run.state["alpha"] = torch.full((run.num_train,), 0.5)
    run.state["logit"] = torch.logit(run.state["alpha"].clamp(1e-6, 1 - 1e-6))


def retrain_step(run, batch, clean):
    """Kept samples (alpha ≥ threshold; weighted by alpha or not) and one clean batch."""
    o = run.options
    alpha = run.state["alpha"].to(run.device)[batch.indices]
    weight = (alpha >= o["threshold"]).float() * (alpha if o["retrain_weighted"] else 1.0)
    logits, _ = run.model(batch.images)
    losses = F.cross_entropy(logits.float(), batch.labels, reduction="none")
    total, count = (weight * losses).sum(), weight.sum()
    if o["retrain_clean"]:
        images, labels = next(clean)
        clean_logits, _ = run.model(images)
        total = total + F.cross_entropy(clean_logits.float(), labels, reduction="sum")
        count = count + len(labels)
    loss = total / count.clamp_min(1e-12)
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    return StepOutput(loss.detach(), logits.detach())


@contextmanager
def class_forward(model):
    """Under mixed precision Accelerate replaces ``model.forward`` on the instance with an
    autocasting wrapper bound to the original module; ``higher``'s functional copy would call
    that bound method and never see its fast weights. Use the class's forward meanwhile (the
    caller autocasts)."""
    patched = model.__dict__.pop("forward", None)
    try:
        yield model
    finally:
        if patched is not None:
            model.forward = patched


def meta_train_step(run, batch, clean):
    """One step of Algorithm 1: meta-gradient, weight update, Theta ← Theta'(alpha as it was)."""
    o = run.options
    model = run.accelerator.unwrap_model(run.model)
    alpha = run.state["alpha"].to(run.device)[batch.indices]
    clean_images, clean_labels = next(clean)
    lr = run.optimizer.param_groups[0]["lr"]
    meta = head_meta_step if o["meta_layers"] == "head" else META_GRADIENTS[o["meta_gradient"]]
    with run.phase("meta"), run.accelerator.autocast(), class_forward(model):
        result = meta(model, batch.images, batch.labels, alpha, clean_images, clean_labels, lr, distributed_sum(run))
    logit = run.state["logit"].to(run.device)[batch.indices]
    new_alpha, new_logit = update_weights(alpha, logit, result.alpha_grad.float(), o["weight_lr"], o["weight_rule"])
    run.state["alpha"] = run.state["alpha"].to(run.device)
    run.state["logit"] = run.state["logit"].to(run.device)
    if run.accelerator.num_processes == 1:  # a batch's indices are distinct: no gather, no host sync
        seen, values = batch.indices, torch.stack([new_alpha, new_logit], dim=1)
    else:
        seen, values = run.collect(batch.indices, torch.stack([new_alpha, new_logit], dim=1))
    run.state["alpha"][seen], run.state["logit"][seen] = values[:, 0], values[:, 1]
    take_step(run, model, result.buffers, result.grads)
    return StepOutput(result.loss, result.logits)


def take_step(run, model, buffers: dict, grads: list) -> None:
    """Keep the BatchNorm statistics of the noisy forward (averaged over the processes) and take
    the run's optimiser step with ``grads`` (shared with ``mwnet``)."""
    with torch.no_grad():
        for (name, buffer) in model.named_buffers():
            if name in buffers:
                buffer.copy_(run.accelerator.reduce(buffers[name], "mean") if buffer.is_floating_point()
                             else buffers[name])
    run.optimizer.zero_grad(set_to_none=True)
    for parameter, grad in zip(model.parameters(), grads):
        parameter.grad = grad.to(parameter.dtype)
    run.optimizer.step()


@hookimpl
def noisybench_train_step(run, batch):
    if run.scratch.get("clean_epoch") != run.epoch:
        run.scratch["clean_epoch"], run.scratch["clean_batches"] = run.epoch, clean_batches(run)
    clean = run.scratch["clean_batches"]
    if run.options["mode"] == "retrain":
        return retrain_step(run, batch, clean)
    if run.epoch >= run.options["start_epoch"]:
        return meta_train_step(run, batch, clean)
    return None  # before start_epoch: the default step with the weighted loss below


@hookimpl
def noisybench_epoch_end(run, epoch: int) -> None:
    if run.options["mode"] == "joint" and epoch >= run.options["start_epoch"]:
        run.warn_if_collapsed("lsw", run.state["alpha"], zero=0.01)


@hookimpl
def noisybench_loss(run, logits, labels, indices):
    alpha = run.state["alpha"].to(logits.device)[indices]
    return weighted_loss(logits, labels, alpha)


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    alpha = run.state["alpha"].float().cpu()
    # -alpha, not 1 - alpha: the same order, and exact where 1 - alpha rounds to 1 (alpha < 6e-8)
    return {"weight": alpha, "noise_score": -alpha, "flagged": alpha < run.options["threshold"]}
