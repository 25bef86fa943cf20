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
    """The authors' training loss of one batch (module docstring), in float32 at least;
    differentiable in ``logits``, ``u`` and ``v`` as their code is."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    big_u, big_v = noise_terms(u.to(logits.dtype), v.to(logits.dtype), onehot)
    return loss_and_parts(logits, onehot, big_u, big_v)[0]


def loss_and_parts(logits: torch.Tensor, onehot: torch.Tensor, big_u: torch.Tensor,
                   big_v: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The loss and, for ``noise_gradients``, p, the clamped p + U − V and the squared error's residual."""
    p = torch.softmax(logits, dim=1)
    shifted = (p + big_u - big_v.detach()).clamp_min(EPSILON)
    predicted = F.normalize(shifted, p=1, dim=1, eps=EPSILON).clamp(EPSILON, 1.0)
    cross_entropy = -(onehot * torch.log(predicted)).sum(dim=1).mean()
    hard = F.one_hot(logits.detach().argmax(dim=1), logits.shape[1]).to(logits.dtype)
    residual = hard + big_u - big_v - onehot
    return cross_entropy + (residual ** 2).sum() / len(onehot), (p, shifted, residual)


@torch.no_grad()
def noise_gradients(u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, big_u: torch.Tensor, big_v: torch.Tensor,
                    p: torch.Tensor, shifted: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂u and ∂L/∂v in closed form, as autograd finds them through the authors' loss: u
    through U at the label, in the cross-entropy (−1/s_y + 1/Σs where no clamp acts on s_y or
    on s_y/Σs) and the squared error (2·residual_y); v through V, in the squared error only
    (−2·residual, V has no gradient in the cross-entropy); a clamp passes gradient strictly
    inside its interval, as torch's autograd does; all over the batch size B."""
    column = labels[:, None]
    s_y, total = shifted.gather(1, column).squeeze(1), shifted.sum(dim=1)
    ratio = s_y / total
    raw = p.gather(1, column).squeeze(1) + big_u.gather(1, column).squeeze(1)
    passes = (raw > EPSILON) & (ratio > EPSILON) & (ratio < 1)
    d_big_u = torch.where(passes, 1 / total - 1 / s_y, 0.0) + 2 * residual.gather(1, column).squeeze(1)
    grad_u = d_big_u * u * ((u * u < 1) * (2.0 / len(labels)))
    off = big_v.new_ones(()) - F.one_hot(labels, v.shape[1]).to(v.dtype)
    grad_v = residual * v * (off * (v * v * off < 1) * (-4.0 / len(labels)))
    return grad_u, grad_v


def sop_step(logits: torch.Tensor, labels: torch.Tensor, u: torch.Tensor, v: torch.Tensor, lr_u: float,
             lr_v: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, u − lr_u·∂L/∂u, v − lr_v·∂L/∂v) for a batch's u, v: the authors' SGD step (momentum 0,
    weight decay 0) on the gradient of the loss the network steps on, taken at the same point.
    The loss carries gradient to ``logits`` only; u's and v's come in closed form."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    u, v = u.to(logits.dtype), v.to(logits.dtype)
    with torch.no_grad():
        big_u, big_v = noise_terms(u, v, onehot)
    loss, (p, shifted, residual) = loss_and_parts(logits, onehot, big_u, big_v)
    grad_u, grad_v = noise_gradients(u, v, labels, big_u, big_v, p.detach(), shifted.detach(), residual.detach())
    return loss, u - lr_u * grad_u, v - lr_v * grad_v


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
