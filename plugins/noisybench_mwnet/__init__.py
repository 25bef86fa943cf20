"""Meta-Weight-Net (Shu et al., NeurIPS 2019): an MLP maps each sample's loss to its weight, and is meta-learned so that a step on the weighted loss lowers the loss on a clean set.

Each training step (``weightnet.py``): the noisy batch's losses give weights w = V(L; phi)
(V: 1-100-1, ReLU, sigmoid); a virtual SGD step Theta'(phi) on sum w_i L_i / Z; phi takes an
optimiser step on the clean (meta) batch's mean cross-entropy at Theta'(phi), through LSW's
exact meta-gradient (``meta_gradient``: ``jvp`` or ``higher``); then Theta takes the run's
step on the weights of the updated V. ``script`` picks the authors' two scripts:
``stable`` (MW-Net.py, the paper's equations: Z = n, V trained by Adam, lr 1e-3, weight decay
1e-4) or ``wrn`` (train_WRN-28-10_Meta_PGC.py: Z = sum_i w_i, SGD lr 1e-3, momentum 0.9,
Nesterov, weight decay 5e-4); ``normalise``, ``weight_optimizer`` and ``weight_decay`` are
``auto`` (the script's) unless set. The meta batch is as large as the training batch
(``clean_batch_size: auto``), as the authors draw both with one batch size.

Needs a clean set: setting ``clean`` (``data.clean_fraction`` held out, class-stratified,
under synthetic noise; the authors hold out 1,000 clean training images). Records: ``weight``
= V(L_i) of the sample's last step, ``noise_score`` = −weight, ``flagged`` where the weight is
below ``flag_ratio`` times the mean weight, and each epoch's ``weight_curve`` (V at losses
0, 0.5, 1, 2, 4, 8).
"""

from __future__ import annotations

import zlib

import torch

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput
from noisybench_lsw import check_meta_run, class_forward, clean_batches, distributed_sum, take_step
from noisybench_lsw.meta import NORMALISATIONS, full_meta_step, jvp_meta_step
from noisybench_mwnet.weightnet import WeightNet, meta_weight_step, weight_optimizer, weights_of

META_GRADIENTS = {"jvp": jvp_meta_step, "higher": full_meta_step}
SCRIPTS = {  # the authors' two scripts: (normalise, weight_optimizer, weight_decay)
    "stable": ("mean", "adam", 1e-4),  # MW-Net.py, "a stable version" (README): ResNet-32
    "wrn": ("sum", "sgd", 5e-4),  # train_WRN-28-10_Meta_PGC.py: WRN-28-10, the uniform-noise table
}
CURVE_LOSSES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)

CATALOG = {
    "family": "meta-weighting",
    "paper": "Shu et al., NeurIPS 2019",
    "code": "https://github.com/xjtushujun/meta-weight-net",
    "checked": "V's output and d L_meta/d phi on hand-set weights against the authors' algorithm written out with "
               "torch.func (both normalisations), against higher and against finite differences in float64",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "script": "the authors' script whose settings auto takes: stable (MW-Net.py) or wrn (train_WRN-28-10)",
    "normalise": "Z of sum w_i L_i / Z: mean (Z = n, MW-Net.py) or sum (Z = sum w_i, the WRN script); auto: the script's",
    "weight_optimizer": "V's optimiser: adam (MW-Net.py) or sgd (momentum 0.9, Nesterov; the WRN script); auto: the script's",
    "weight_lr": "V's learning rate (both scripts: 1e-3)",
    "weight_decay": "V's weight decay (auto: 1e-4 for stable, 5e-4 for wrn, the scripts')",
    "hidden": "V's hidden units (the authors': 100)",
    "clean_batch_size": "meta-batch size (auto: the run's batch_size, as the authors)",
    "meta_gradient": "jvp (one forward-mode pass) or higher (the reference); both exact",
    "flag_ratio": "a sample is flagged when its weight is below flag_ratio x the mean weight (records only)",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"script": "stable", "normalise": "auto", "weight_optimizer": "auto", "weight_lr": 1e-3,
            "weight_decay": "auto", "hidden": 100, "clean_batch_size": "auto", "meta_gradient": "jvp",
            "flag_ratio": 0.5}


def _number(value, low: float, high: float | None = None) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    o = options
    if o["script"] not in SCRIPTS:
        raise ConfigError(f"mwnet.script='{o['script']}': expected stable or wrn")
    normalise, optimizer, decay = SCRIPTS[o["script"]]
    for key, value in (("normalise", normalise), ("weight_optimizer", optimizer), ("weight_decay", decay),
                       ("clean_batch_size", config["batch_size"])):
        if o[key] == "auto":
            o[key] = value  # resolved into the saved config and the fingerprint
    checks = {"normalise": o["normalise"] in NORMALISATIONS, "weight_optimizer": o["weight_optimizer"] in ("adam", "sgd"),
              "weight_lr": _number(o["weight_lr"], 0) and o["weight_lr"] > 0, "weight_decay": _number(o["weight_decay"], 0),
              "hidden": isinstance(o["hidden"], int) and _number(o["hidden"], 1),
              "clean_batch_size": isinstance(o["clean_batch_size"], int) and _number(o["clean_batch_size"], 1),
              "meta_gradient": o["meta_gradient"] in META_GRADIENTS, "flag_ratio": _number(o["flag_ratio"], 0)}
    for key, ok in checks.items():
        if not ok:
            raise ConfigError(f"config key 'mwnet.{key}' has a bad value: {o[key]!r} ({OPTION_HELP[key]})")
    if config["optimizer"]["name"] != "sgd":
        raise ConfigError(f"mwnet differentiates an SGD step; optimizer.name={config['optimizer']['name']} "
                          "(e.g. AdamW) is not supported")


@hookimpl
def noisybench_setup(run) -> None:
    o = run.options
    check_meta_run(run, "mwnet")
    with torch.random.fork_rng(devices=[]):  # V's initial weights, seeded apart from the run's stream
        torch.manual_seed(run.config["seed"] * 1_000_003 + zlib.crc32(b"mwnet"))
        net = WeightNet(o["hidden"]).to(run.device)
    run.scratch["net"] = net
    run.scratch["net_optimizer"] = weight_optimizer(net, o["weight_optimizer"], o["weight_lr"], o["weight_decay"])
    run.state["weight"] = torch.ones(run.num_train)
    publish(run)


def publish(run) -> None:
    """V and its optimiser's state into ``run.state`` (checkpointed); the tensors are V's own."""
    run.state["net"] = run.scratch["net_state"] = run.scratch["net"].state_dict()
    run.state["net_optimizer"] = run.scratch["net_optimizer"].state_dict()


def weight_net(run) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """V and its optimiser, loaded from ``run.state`` where a resumed run restored it."""
    net, optimizer = run.scratch["net"], run.scratch["net_optimizer"]
    if run.state["net"] is not run.scratch["net_state"]:
        net.load_state_dict(run.state["net"])
        optimizer.load_state_dict(run.state["net_optimizer"])
        publish(run)
    return net, optimizer


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    o = run.options
    if run.scratch.get("clean_epoch") != run.epoch:
        run.scratch["clean_epoch"], run.scratch["clean_batches"] = run.epoch, clean_batches(run)
    clean_images, clean_labels = next(run.scratch["clean_batches"])
    net, net_optimizer = weight_net(run)
    model = run.accelerator.unwrap_model(run.model)
    lr = run.optimizer.param_groups[0]["lr"]
    with run.phase("meta"), run.accelerator.autocast(), class_forward(model):
        step = meta_weight_step(model, batch.images, batch.labels, clean_images, clean_labels, lr, net,
                                net_optimizer, META_GRADIENTS[o["meta_gradient"]], o["normalise"], distributed_sum(run))
    publish(run)
    run.state["weight"] = run.state["weight"].to(run.device)
    if run.accelerator.num_processes == 1:  # a batch's indices are distinct: no gather, no host sync
        seen, values = batch.indices, step.weights
    else:
        seen, values = run.collect(batch.indices, step.weights)
    run.state["weight"][seen] = values
    take_step(run, model, step.buffers, step.grads)
    return StepOutput(step.loss, step.logits)


@hookimpl
def noisybench_epoch_end(run, epoch: int) -> None:
    net, _ = weight_net(run)
    with torch.no_grad():
        curve = weights_of(net, torch.tensor(CURVE_LOSSES, device=run.device))
    run.log(weight_curve=[round(float(w), 6) for w in curve])
    run.warn_if_collapsed("mwnet", run.state["weight"], zero=0.01)


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    weight = run.state["weight"].float().cpu()
    return {"weight": weight, "noise_score": -weight, "flagged": weight < run.options["flag_ratio"] * weight.mean()}
