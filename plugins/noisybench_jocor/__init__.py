"""JoCoR (Wei et al., CVPR 2020): two networks trained together on the samples with the smallest joint loss, cross-entropy plus a co-regularisation that pulls their predictions together.

Per sample, with p₁ = softmax(z₁), p₂ = softmax(z₂) (loss.py ``loss_jocor``):

    ℓ = (1 − λ)·(CE(z₁, y) + CE(z₂, y)) + λ·(KL(p₂ ‖ p₁) + KL(p₁ ‖ p₂))

(the gradient flows through both sides of each KL, as the authors' ``kl_div`` with an
undetached target). The ⌊(1 − r(e))·n⌋ samples of the batch with the smallest ℓ are kept and
the mean of their ℓ updates both networks at once. r(e) is the authors' forget-rate schedule
(``noisybench_coteaching.family``); ``forget_rate=auto`` is the noise rate, half of it under
``mapped`` noise (the authors' "asymmetric"). ``co_lambda=auto`` follows their README and
example: 0.95 on MNIST, 0.85 on CIFAR-100, 0.65 on CIFAR-10 with 80% or more symmetric noise,
0.9 otherwise. Evaluation (``evaluate``): ``main``, the main network alone (the authors test
each network alone; this is their model 1), or ``mean``, both networks' mean softmax. Setup
(the peer network, per-sample counts) and records are Co-teaching's hooks, imported:
``weight`` = the share of a sample's batches in which it was kept, ``noise_score`` = its last
joint loss, ``flagged``: not kept in its last batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from noisybench_coteaching import PEER, cross_select, noisybench_sample_outputs, noisybench_setup, record  # noqa: F401
from noisybench_coteaching.family import EVALUATIONS, authors_forget_rate, noise_forget_rate, two_network_logits

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import StepOutput

CATALOG = {
    "family": "sample selection",
    "paper": "Wei, Feng, Chen & An, CVPR 2020",
    "code": "https://github.com/hongxin001/JoCoR",
    "checked": "a hand-computed joint loss (both KL directions, λ-weighted), its small-loss pick and gradients "
               "reaching both networks, against algorithm/loss.py and algorithm/jocor.py",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "forget_rate": "the fraction of each batch finally left out (auto: the noise rate, half of it under mapped noise)",
    "num_gradual": "T_k: epochs over which the left-out fraction grows from 0 (authors' linspace)",
    "exponent": "c: the schedule's ramp rises to forget_rate ** c (authors' default 1)",
    "co_lambda": "lambda: the co-regularisation's weight (auto: 0.95 mnist, 0.85 cifar100, 0.65 cifar10 with "
                 "symmetric noise >= 0.8, else 0.9, as the authors' README)",
    "evaluate": "main: the main network alone, as the authors test each network; mean: both networks' mean softmax",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"forget_rate": "auto", "num_gradual": 10, "exponent": 1.0, "co_lambda": "auto", "evaluate": "main"}


def authors_lambda(dataset: str | None, noise: str | None) -> float:
    """λ as the authors' README and example.sh give it."""
    from noisybench.noise import parse_noise

    spec = parse_noise(noise)
    if dataset == "mnist":
        return 0.95
    if dataset == "cifar100":
        return 0.85
    if dataset == "cifar10" and spec.type == "symmetric" and spec.rate >= 0.8:
        return 0.65
    return 0.9


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["forget_rate"] == "auto":
        options["forget_rate"] = noise_forget_rate("jocor", config["noise"], halve_mapped=True)
    if options["co_lambda"] == "auto":
        options["co_lambda"] = authors_lambda(config.get("dataset"), config.get("noise"))
    checks = {"forget_rate": lambda v: isinstance(v, (int, float)) and 0 <= v < 1,
              "num_gradual": lambda v: isinstance(v, int) and v >= 1,
              "exponent": lambda v: isinstance(v, (int, float)) and v > 0,
              "co_lambda": lambda v: isinstance(v, (int, float)) and 0 <= v <= 1,
              "evaluate": lambda v: v in EVALUATIONS}
    for key, ok in checks.items():
        if isinstance(options[key], bool) or not ok(options[key]):
            raise ConfigError(f"config key 'jocor.{key}' has a bad value: {options[key]!r} ({OPTION_HELP[key]})")


def joint_loss(logits_1: torch.Tensor, logits_2: torch.Tensor, labels: torch.Tensor, co_lambda: float) -> torch.Tensor:
    """Per-sample (1 − λ)(CE₁ + CE₂) + λ(KL(p₂‖p₁) + KL(p₁‖p₂))."""
    supervised = F.cross_entropy(logits_1, labels, reduction="none") + F.cross_entropy(logits_2, labels, reduction="none")
    kl_21 = F.kl_div(F.log_softmax(logits_1, dim=1), F.softmax(logits_2, dim=1), reduction="none").sum(dim=1)  # KL(p₂‖p₁)
    kl_12 = F.kl_div(F.log_softmax(logits_2, dim=1), F.softmax(logits_1, dim=1), reduction="none").sum(dim=1)
    return (1 - co_lambda) * supervised + co_lambda * (kl_21 + kl_12)


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput:
    o = run.options
    peer = run.networks[PEER]
    logits, _ = run.model(batch.images)
    peer_logits, _ = peer.model(batch.images)
    joint = joint_loss(logits.float(), peer_logits.float(), batch.labels, o["co_lambda"])
    keep = 1.0 - authors_forget_rate(run.epoch, o["forget_rate"], o["num_gradual"], o["exponent"])
    kept_positions, _ = cross_select(joint.detach(), joint.detach(), keep)  # the smallest joint losses
    loss = joint[kept_positions].mean()
    run.optimizer.zero_grad(set_to_none=True)
    peer.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)  # one loss, both networks: as one optimiser over both
    run.optimizer.step()
    peer.optimizer.step()
    kept = torch.zeros_like(batch.labels, dtype=torch.bool)
    kept[kept_positions] = True
    record(run, batch.indices, joint.detach(), kept)
    return StepOutput(loss.detach(), logits.detach())


@hookimpl
def noisybench_eval_logits(run, images, logits) -> torch.Tensor | None:
    """``evaluate=main``: the main network alone (the authors test each network; this is their
    model 1); ``mean``: the log of both networks' mean softmax."""
    return two_network_logits(run, images, logits, run.options["evaluate"])
