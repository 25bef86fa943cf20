"""DivideMix (Li, Socher & Hoi, ICLR 2020): two networks divide the data into clean and noisy by a Gaussian mixture on their losses, and each trains on the other's division with MixMatch.

After ``warm_up`` epochs of cross-entropy (with a confidence penalty under asymmetric
noise), each epoch starts with an eval pass per network over the training set: per-sample
losses, min-max normalised, a two-component Gaussian mixture, w_i = the posterior of the
low-loss component. Each network then trains on the division of its peer (co-divide):
samples with w > ``p_threshold`` are labelled, with their labels refined as
sharpen(w·y + (1 − w)·p̄), the others unlabelled, with guesses co-guessed by both networks
over two views and sharpened (T); labelled and unlabelled are MixUp-ed with λ′ = max(λ, 1 − λ),
λ ~ Beta(α, α), and the loss is L_x + λ_u·ramp·L_u + the uniform-prior penalty. The test
predicts by the mean of both networks' softmax.

Adapted to the core's loop (documented in docs/methods/dividemix.md): each core batch is
split into its labelled and unlabelled parts by the peer's w, where the authors draw a full
labelled batch and a full unlabelled batch from two loaders; the second view comes from
``run.views``; λ_u's ramp moves per epoch. Under ``data.epoch_subset`` the co-divide
scores only the epoch's samples, as the authors' Clothing1M code divides its sampled subset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput
from noisybench_dividemix.mixmatch import (clean_probability, co_guess, mix, mixmatch_losses, rampup, refined_labels,
                                           uniform_prior_penalty)

PEER = "peer"

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "semi-supervised",
    "paper": "Li, Socher & Hoi, ICLR 2020",
    "code": "https://github.com/LiJunnan1992/DivideMix",
    "checked": "the mixture split, sharpening and label refinement, co-guessing, MixUp's larger weight and the "
               "uniform-prior penalty by hand",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "warm_up": "epochs of plain cross-entropy before the first division (paper: 10 CIFAR-10, 30 CIFAR-100, 1 Clothing1M)",
    "p_threshold": "w above it: labelled (paper 0.5)",
    "temperature": "T, the sharpening temperature (paper 0.5)",
    "alpha": "MixUp's Beta(alpha, alpha) (paper 4; 0.5 for Clothing1M)",
    "lambda_u": "the unlabelled loss's weight (paper: 0 to 150 by noise; 0 for Clothing1M)",
    "confidence_penalty": "warm-up's negative-entropy penalty (auto: asymmetric or mapped noise, or clothing1m, as the authors)",
    "mix": "all: the MixMatch loss over the mixed labelled and unlabelled samples (paper, CIFAR code); labelled: over "
           "the mixed labelled samples only, no L_u (their Clothing1M script); auto: labelled on clothing1m, else all",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"warm_up": 10, "p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 25.0,
            "confidence_penalty": "auto", "mix": "auto"}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    from noisybench.noise import parse_noise

    if options["confidence_penalty"] == "auto":  # as the authors: asymmetric noise, and their Clothing1M script
        options["confidence_penalty"] = (parse_noise(config["noise"]).type in ("asymmetric", "mapped")
                                         or config.get("dataset") == "clothing1m")
    if options["mix"] == "auto":
        options["mix"] = "labelled" if config.get("dataset") == "clothing1m" else "all"
    checks = {"warm_up": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "p_threshold": lambda v: isinstance(v, (int, float)) and 0 < v < 1,
              "temperature": lambda v: isinstance(v, (int, float)) and v > 0,
              "alpha": lambda v: isinstance(v, (int, float)) and v > 0,
              "lambda_u": lambda v: isinstance(v, (int, float)) and v >= 0,
              "confidence_penalty": lambda v: isinstance(v, bool),
              "mix": lambda v: v in ("all", "labelled")}
    for key, ok in checks.items():
        if isinstance(options[key], bool) and key != "confidence_penalty" or not ok(options[key]):
            raise ConfigError(f"config key 'dividemix.{key}' has a bad value: {options[key]!r} ({OPTION_HELP[key]})")


@hookimpl
def noisybench_setup(run) -> None:
    if run.options["warm_up"] >= run.num_epochs:  # a run of nothing but warm-up is cross-entropy, not DivideMix
        run.warn(f"dividemix.warm_up={run.options['warm_up']} is not below epochs={run.num_epochs}: every epoch is "
                 "warm-up, no division is ever made; the run is cross-entropy with a peer network")
    run.add_network(PEER)
    run.state["w"] = torch.ones(2, run.num_train)  # clean probability by (main, peer)


def networks(run) -> tuple[torch.nn.Module, torch.nn.Module]:
    return run.model, run.networks[PEER].model


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    """The co-divide: each network's per-sample losses in an eval pass, a mixture each; over
    the epoch's samples under ``data.epoch_subset`` (the authors' Clothing1M code divides the
    sampled subset it then trains on), else over the whole training set."""
    if epoch <= run.options["warm_up"]:
        return
    from noisybench.loaders import epoch_subset

    subset = epoch_subset(run.config, run.noisy_labels.numpy(), epoch)
    chosen = None if subset is None else torch.as_tensor(subset)
    losses = []
    for name in ("main", PEER):
        run.scratch["eval_network"] = name
        with run.phase("eval_pass"):
            logits, _ = run.predict(chosen)
        run.scratch.pop("eval_network")
        labels = (run.noisy_labels if chosen is None else run.noisy_labels[chosen]).to(logits.device)
        losses.append(F.cross_entropy(logits.float(), labels, reduction="none").cpu().numpy())
    with run.phase("gmm"):
        seed = run.config["seed"] * 100_003 + epoch
        w = run.state["w"].clone()
        for row, loss in enumerate(losses):  # samples outside the subset keep their last w: they do not train
            w[row, slice(None) if chosen is None else chosen] = torch.as_tensor(clean_probability(loss, seed),
                                                                               dtype=torch.float32)
        run.state["w"] = w


def warm_up_step(run, batch) -> StepOutput:
    """Cross-entropy on both networks (minus the entropy, under asymmetric noise)."""
    total, first = 0.0, None
    optimizers = [run.optimizer, run.networks[PEER].optimizer]
    for model in networks(run):
        logits, _ = model(batch.images)
        loss = F.cross_entropy(logits.float(), batch.labels)
        if run.options["confidence_penalty"]:
            p = torch.softmax(logits.float(), dim=1)
            loss = loss + (p * torch.log(p.clamp_min(1e-12))).sum(dim=1).mean()
        total = total + loss
        first = logits if first is None else first
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(total)
    for optimizer in optimizers:
        optimizer.step()
    return StepOutput(total.detach() / 2, first.detach())


def unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images as floats in [0, 1], where MixUp is taken (the model normalises after it: the
    normalisation is affine, so mixing before it equals mixing after)."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def mixmatch_step(run, net, other, optimizer, views, labels, w) -> torch.Tensor:
    o = run.options
    labelled = w > o["p_threshold"]
    unlabelled = ~labelled
    one_hot = F.one_hot(labels, run.num_classes).float()
    was_training = other.training
    other.eval()
    with torch.no_grad():
        p_net = [torch.softmax(net(v)[0].float(), dim=1) for v in views]  # train mode, as the authors guess
        p_other = [torch.softmax(other(v)[0].float(), dim=1) for v in views]
    other.train(was_training)
    targets_x = refined_labels(one_hot[labelled], [p[labelled] for p in p_net], w[labelled], o["temperature"])
    targets_u = co_guess([p[unlabelled] for p in p_net + p_other], o["temperature"])
    inputs = torch.cat([views[0][labelled], views[1][labelled], views[0][unlabelled], views[1][unlabelled]])
    targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
    lam = float(torch.distributions.Beta(o["alpha"], o["alpha"]).sample())
    mixed_inputs, mixed_targets = mix(inputs, targets, lam, torch.randperm(len(inputs), device=inputs.device))
    count = 2 * int(labelled.sum())
    labelled_only = o["mix"] == "labelled"  # their Clothing1M script: partners from both parts, the loss on the labelled part
    if labelled_only and count:
        mixed_inputs, mixed_targets = mixed_inputs[:count], mixed_targets[:count]
    logits, _ = net(mixed_inputs)
    lx, lu = mixmatch_losses(logits[:count], mixed_targets[:count], logits[count:], mixed_targets[count:])
    if labelled_only:  # no L_u; a batch without labelled samples learns nothing (a zero loss every process steps on)
        loss = lx + uniform_prior_penalty(logits) if count else logits.sum() * 0
    else:
        loss = lx + o["lambda_u"] * rampup(run.epoch - 1, o["warm_up"]) * lu + uniform_prior_penalty(logits)
    optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    optimizer.step()
    return loss.detach()


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    if run.epoch <= run.options["warm_up"]:
        return warm_up_step(run, batch)
    with run.phase("mixmatch"):
        second = run.views(batch.indices, 1)[0]
        views = [unit_range(batch.images), unit_range(second)]
        w = run.state["w"].to(run.device)[:, batch.indices]
        main, peer = networks(run)
        loss = mixmatch_step(run, main, peer, run.optimizer, views, batch.labels, w[1])  # the peer's division
        mixmatch_step(run, peer, main, run.networks[PEER].optimizer, views, batch.labels, w[0])
    return StepOutput(loss)


@hookimpl
def noisybench_eval_logits(run, images, logits) -> torch.Tensor:
    """The log of both networks' mean softmax (``logits``: the main network's); during the
    co-divide pass, one network's logits."""
    chosen = run.scratch.get("eval_network")
    if chosen == "main":
        return logits
    peer_logits, _ = run.accelerator.unwrap_model(run.networks[PEER].model)(images)
    if chosen == PEER:
        return peer_logits
    return torch.log((torch.softmax(logits.float(), dim=1) + torch.softmax(peer_logits.float(), dim=1)) / 2)


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    w = run.state["w"].float().cpu().mean(dim=0)
    return {"weight": w, "noise_score": 1 - w, "flagged": w <= run.options["p_threshold"]}
