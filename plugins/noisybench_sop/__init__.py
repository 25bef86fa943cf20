"""SOP, sparse over-parameterization (Liu, Zhu, Qu & You, ICML 2022): each training sample's label noise modelled as u²·y − v²·(1 − y) with per-sample parameters u, v learnt beside the network at their own learning rates.

Per sample i with one-hot noisy label y, U = clamp(u_i² y, 0, 1), V = clamp(v_i² ⊙ (1 − y), 0, 1)
(u_i a scalar, v_i a K-vector), p the softmax, h the one-hot of the arg-max logit, ε = 1e-4:

    p̃ = clamp(p + U − sg(V), ε) / max(‖·‖₁, ε),  clamped to [ε, 1]
    L = mean_i −⟨y, log p̃⟩ + (1/B) Σ_i ‖h + U − V − y‖²

(sg: no gradient), as the authors' ``overparametrization_loss`` (SOP, not SOP+: no consistency
or class-balance term). Each step, u and v take one plain SGD step on L (no momentum, no weight
decay) with learning rates ``lr_u`` and ``lr_v``, the network one step of the run's optimiser.
u and v start from N(0, ``init_std``²). Records: ``noise_score`` = U at the noisy label (the
mass SOP adds to the prediction to explain the label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.floats import wide
from noisybench.noise import parse_noise

EPSILON = 1e-4
SYMMETRIC_DEFAULT = (1.0, 10.0)  # config_cifar100.json; README: CIFAR-100 symmetric noise
ASYMMETRIC_CIFAR100 = (0.1, 100.0)  # README: CIFAR-100 40% asymmetric noise
CIFAR10 = (10.0, 10.0)  # the CIFAR-10 values of the paper's Table A.1, as noisypy's SOP configs give them

OPTION_HELP = {
    "lr_u": "learning rate of the per-sample u (auto: 10 on cifar10, 0.1 on cifar100 with asymmetric or mapped "
            "noise, else 1: the authors' values)",
    "lr_v": "learning rate of the per-sample v (auto: 10, or 100 on cifar100 with asymmetric or mapped noise)",
    "init_std": "standard deviation of the normal draw that initialises u and v (the authors' 1e-8)",
}

CATALOG = {
    "family": "over-parameterization",
    "paper": "Liu, Zhu, Qu & You, ICML 2022",
    "code": "https://github.com/shengliu66/SOP",
    "checked": "the loss and the SGD steps of u and v (their own learning rates, u²−v², the clamps to [0, 1] and "
               "ε = 1e-4, V without gradient in the cross-entropy) on a hand case, against the closed-form "
               "gradients of model/loss.py; the loss's gradient against finite differences incl. p → 0, p → 1, "
               "one class",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"lr_u": "auto", "lr_v": "auto", "init_std": 1e-8}


def authors_rates(dataset: str, noise) -> tuple[float, float]:
    """(lr_u, lr_v) of the authors' README and configuration for this dataset and noise."""
    if dataset == "cifar10":
        return CIFAR10
    if dataset == "cifar100" and parse_noise(noise).type in ("asymmetric", "mapped"):
        return ASYMMETRIC_CIFAR100
    return SYMMETRIC_DEFAULT


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    paper = dict(zip(("lr_u", "lr_v"), authors_rates(config.get("dataset"), config.get("noise"))))
    for key in ("lr_u", "lr_v", "init_std"):
        if options[key] == "auto" and key in paper:
            options[key] = paper[key]  # resolved into the saved config and the fingerprint
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"config key 'sop.{key}' expects a number ≥ 0{' or auto' if key in paper else ''}, "
                              f"got {value!r}")
        options[key] = float(value)


def noise_terms(u: torch.Tensor, v: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U = clamp(u² y, 0, 1) and V = clamp(v² (1 − y), 0, 1) for a batch (u: B, v: B×K)."""
    return (u[:, None] ** 2 * onehot).clamp(0, 1), (v ** 2 * (1 - onehot)).clamp(0, 1)


def sop_loss(logits: torch.Tensor, labels: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The authors' training loss of one batch, written as their ``overparametrization_loss``
    writes it (``F.normalize``, the one-hot product), in float32 at least; differentiable in
    ``logits``, ``u`` and ``v``. Training computes the same loss and its gradients in closed
    form (``loss_and_gradients``); tests hold the two equal."""
    logits = wide(logits)
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    big_u, big_v = noise_terms(u.to(logits.dtype), v.to(logits.dtype), onehot)
    prediction = (torch.softmax(logits, dim=1) + big_u - big_v.detach()).clamp_min(EPSILON)
    prediction = F.normalize(prediction, p=1, dim=1, eps=EPSILON).clamp(EPSILON, 1.0)
    cross_entropy = torch.mean(-torch.sum(onehot * torch.log(prediction), dim=-1))
    hard = F.one_hot(logits.detach().argmax(dim=1), logits.shape[1]).to(logits.dtype)
    return cross_entropy + F.mse_loss(hard + big_u - big_v, onehot, reduction="sum") / len(labels)


@torch.no_grad()
def loss_and_gradients(logits: torch.Tensor, labels: torch.Tensor, u: torch.Tensor,
                       v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sop_loss``'s value and its gradients with respect to the logits, u and v, in closed form,
    as autograd finds them through the authors' computation: with s = clamp(p + U − V, ε) and
    Σs its sum, the cross-entropy −log(s_y/Σs) has ∂/∂s_j = 1/Σs − 𝟙(j = y)/s_y where no clamp
    acts on s_j or on s_y/Σs, which reaches the logits through the softmax and u through U
    at the label; the squared error's residual r = h + U − V − y gives u 2·r_y and v −2·r
    (V has no gradient in the cross-entropy). A clamp passes gradient strictly inside its
    interval, as torch's autograd does; the loss is a mean over the batch size B."""
    batch, column = len(labels), labels[:, None]
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    big_u, big_v = noise_terms(u, v, onehot)
    p = torch.softmax(logits, dim=1)
    before = p + big_u - big_v
    shifted = before.clamp_min(EPSILON)
    total = shifted.sum(dim=1)
    s_y = shifted.gather(1, column).squeeze(1)
    ratio = s_y / total
    residual = F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(logits.dtype) + big_u - big_v - onehot
    loss = -torch.log(ratio.clamp(EPSILON, 1.0)).mean() + residual.square().sum() / batch
    live = ((ratio > EPSILON) & (ratio < 1)).to(logits.dtype) / batch
    d_shifted = ((1 / total)[:, None] - onehot / s_y[:, None]) * (live[:, None] * (before > EPSILON))
    d_logits = p * (d_shifted - (d_shifted * p).sum(dim=1, keepdim=True))  # through the softmax
    d_big_u = d_shifted.gather(1, column).squeeze(1) + residual.gather(1, column).squeeze(1) * (2.0 / batch)
    off = 1 - onehot
    return loss, d_logits, d_big_u * u * (2 * (u * u < 1)), residual * v * (off * (v * v * off < 1) * (-4.0 / batch))


def sop_step(logits: torch.Tensor, labels: torch.Tensor, u: torch.Tensor, v: torch.Tensor, lr_u: float,
             lr_v: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, u − lr_u·∂L/∂u, v − lr_v·∂L/∂v) for a batch's u, v: the authors' SGD step (momentum 0,
    weight decay 0) on the gradient of the loss the network steps on, taken at the same point.
    The loss is ``sop_loss``'s value and backpropagates its closed-form gradient to ``logits``
    (one product node instead of the loss's graph)."""
    logits = wide(logits)
    u, v = u.to(logits.dtype), v.to(logits.dtype)
    value, d_logits, grad_u, grad_v = loss_and_gradients(logits.detach(), labels, u, v)
    surrogate = (logits * d_logits).sum()
    return surrogate - surrogate.detach() + value, u - lr_u * grad_u, v - lr_v * grad_v


@hookimpl
def noisybench_setup(run) -> None:
    generator = torch.Generator().manual_seed(run.config["seed"])  # the run's own stream stays untouched
    std = run.options["init_std"]
    run.state["u"] = torch.randn(run.num_train, generator=generator) * std
    run.state["v"] = torch.randn(run.num_train, run.num_classes, generator=generator) * std


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    o, state = run.options, run.state
    state["u"], state["v"] = state["u"].to(logits.device), state["v"].to(logits.device)
    loss, u, v = sop_step(logits, labels, state["u"][indices], state["v"][indices], o["lr_u"], o["lr_v"])
    if run.accelerator.num_processes > 1:  # every process keeps every sample's u and v
        indices, rows = run.collect(indices, torch.cat([u[:, None], v], dim=1))
        u, v = rows[:, 0], rows[:, 1:]
    state["u"][indices], state["v"][indices] = u, v
    return loss


@hookimpl
def noisybench_sample_outputs(run) -> dict:
    u = run.state["u"].float().cpu()
    return {"noise_score": (u ** 2).clamp(0, 1)}
