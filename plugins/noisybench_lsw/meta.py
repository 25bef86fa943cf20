"""The meta-gradient of Learn Sample Weights (Algorithm 1): d L_clean(Theta'(alpha)) / d alpha.

Theta'(alpha) = Theta − lr·grad_Theta( sum_i alpha_i L_i / sum_i alpha_i )       (eq. 1)
g_i           = d/d alpha_i  sum_{j in B^c} L(f_{Theta'(alpha)}(x_j), y_j)       (eq. 2)

Three forms, each also returning the gradient of the weighted loss for the real optimiser
step (so the noisy batch's forward and backward serve both):

``jvp_meta_step`` (exact, the default): with S = sum alpha, G = sum_j alpha_j grad L_j / S
and v = grad L_clean at Theta', the chain rule gives

    g_i = v · dTheta'/dalpha_i = −lr · (u_i − sum_j alpha_j u_j / S) / S,   u_i = grad L_i · v,

and every u_i comes out of one forward-mode pass (``torch.func.jvp``) of the noisy batch's
per-sample losses along v. Passes: noisy forward + backward, clean forward + backward at
Theta', one JVP of the noisy batch (about 2–3 forwards): no graph through the step.
``full_meta_step`` (exact, the reference): differentiates through the step of every
parameter with ``higher``, which keeps that step's graph and backpropagates through it.
``head_meta_step`` (approximate): through the classifier's step only, with the backbone's
features held fixed (as FSR restricts its meta-gradient to the last layers).

Under several processes pass ``all_reduce``: the weighted loss is normalised by the
global sum of alpha and the step uses the sum of every process's gradient, both through
a differentiable all-reduce, so Theta' and the meta-gradient equal those of one process
holding the union of the batches.

Meta-Weight-Net (``noisybench_mwnet``) uses the two exact forms with three options: the
weights may be a function of the noisy batch's per-sample losses (``alpha=callable``,
called on the detached losses after the noisy forward: w_i = V(L_i; phi)); the weighted loss
may be normalised by the batch size instead (``normalise="mean"``: sum_i w_i L_i / n, so
g_i = −lr·u_i / n); and ``keep_graph=True`` keeps the noisy forward's graph, so that
``MetaResult.regrad(new_alpha)`` gives the weighted-loss gradient for other weights with one
more backward and no second forward.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import higher
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp

from noisybench.floats import wide


class MetaResult(NamedTuple):
    alpha_grad: torch.Tensor  # d L_clean / d alpha, one per noisy sample
    grads: list[torch.Tensor]  # gradient of the weighted loss for every parameter (detached)
    loss: torch.Tensor  # the weighted noisy loss (detached)
    logits: torch.Tensor  # noisy-batch logits (detached)
    buffers: dict[str, torch.Tensor]  # BatchNorm statistics after the noisy forward
    alpha: torch.Tensor | None = None  # the weights the step used (detached)
    regrad: Callable | None = None  # keep_graph: new weights -> the weighted-loss gradient (as ``grads``)


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


NORMALISATIONS = ("sum", "mean")


def weight_total(alpha: torch.Tensor, all_reduce: Callable = _identity, normalise: str = "sum") -> torch.Tensor:
    """The weighted loss's denominator over the (global) batch: sum_i alpha_i (``sum``) or n (``mean``)."""
    if normalise == "mean":
        return all_reduce(torch.full((), float(len(alpha)), dtype=alpha.dtype, device=alpha.device))
    return all_reduce(alpha.sum()).clamp_min(1e-12)


def weighted_sum(losses: torch.Tensor, alpha: torch.Tensor, all_reduce: Callable = _identity,
                 normalise: str = "sum") -> torch.Tensor:
    """sum_i alpha_i L_i / total (``weight_total``) over the (global) batch; this process's share."""
    return (alpha * losses).sum() / weight_total(alpha, all_reduce, normalise)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor,
                  all_reduce: Callable = _identity, normalise: str = "sum") -> torch.Tensor:
    """sum_i alpha_i L_i / sum_i alpha_i over the (global) batch (or / n); this process's share."""
    losses = F.cross_entropy(wide(logits), labels, reduction="none")
    return weighted_sum(losses, alpha, all_reduce, normalise)


def weights_for(alpha, losses: torch.Tensor) -> torch.Tensor:
    """The step's weights: ``alpha`` itself, or ``alpha(losses)`` for a function of the
    per-sample losses (given detached), detached either way."""
    return (alpha(losses.detach()) if callable(alpha) else alpha).detach()


def gradients_of(loss: torch.Tensor, params: list[torch.Tensor], all_reduce: Callable = _identity,
                 retain_graph: bool = False) -> list[torch.Tensor]:
    """d loss / d params, zeros where a parameter is unused, summed over the processes (detached)."""
    found = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph)
    return [all_reduce(torch.zeros_like(p) if g is None else g).detach() for g, p in zip(found, params)]


def full_meta_step(model: nn.Module, images, labels, alpha, clean_images, clean_labels, lr: float,
                   all_reduce: Callable = _identity, *, normalise: str = "sum", keep_graph: bool = False) -> MetaResult:
    """Meta-gradient through one differentiable SGD step of all parameters (``higher``).

    BatchNorm: ``higher`` runs the model on a copy of its buffers; the statistics after
    the noisy forward are returned for the caller to keep, and the clean forward (on
    Theta', batch statistics) changes nothing.
    """
    inner = torch.optim.SGD(model.parameters(), lr=lr)
    captured: list[torch.Tensor] = []
    params = list(model.parameters())

    def reduce_and_keep(grads):
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        grads = [all_reduce(g) for g in grads]
        captured.extend(g.detach() for g in grads)
        return grads

    with higher.innerloop_ctx(model, inner, copy_initial_weights=True) as (fmodel, diffopt):
        initial = list(fmodel.parameters())  # the fast weights before the step: Theta's values
        logits, _ = fmodel(images)
        buffers = {name: b.detach().clone() for name, b in fmodel.named_buffers()}
        losses = F.cross_entropy(wide(logits), labels, reduction="none")
        alpha = weights_for(alpha, losses).requires_grad_(True)
        loss = weighted_sum(losses, alpha, all_reduce, normalise)
        diffopt.step(loss, grad_callback=reduce_and_keep)
        clean_logits, _ = fmodel(clean_images)
        clean_loss = F.cross_entropy(wide(clean_logits), clean_labels, reduction="sum")
        (alpha_grad,) = torch.autograd.grad(clean_loss, alpha, retain_graph=keep_graph)

    def regrad(new_alpha: torch.Tensor) -> list[torch.Tensor]:
        return gradients_of(weighted_sum(losses, new_alpha.detach(), all_reduce, normalise), initial, all_reduce)

    return MetaResult(alpha_grad.detach(), captured, loss.detach(), logits.detach(), buffers, alpha.detach(),
                      regrad if keep_graph else None)


def jvp_meta_step(model: nn.Module, images, labels, alpha, clean_images, clean_labels, lr: float,
                  all_reduce: Callable = _identity, *, normalise: str = "sum", keep_graph: bool = False) -> MetaResult:
    """The exact meta-gradient of ``full_meta_step`` by the chain rule and one JVP (see the
    module docstring for the formula and the pass count).

    The JVP pass replays the noisy forward: the random state (dropout) is rewound to what it
    was before that forward and restored afterwards, and it runs on copies of the buffers, so
    BatchNorm statistics are those after the noisy forward and the random stream continues
    as with ``higher``. Under several processes v, S and sum alpha_j u_j are sums over them.
    The JVP pass runs without autocast, in the parameters' precision: under bf16 autocast
    BatchNorm's forward-mode rule gives a tangent whose type the next convolution refuses
    (torch 2.14), so under mixed precision u_i is the float32 derivative at the same weights.
    """
    named = dict(model.named_parameters())
    moving = [name for name, p in named.items() if p.requires_grad]
    fixed = {name: p.detach() for name, p in named.items() if not p.requires_grad}
    before = random_state(images.device)
    logits, _ = model(images)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    losses = F.cross_entropy(wide(logits), labels, reduction="none")
    alpha = weights_for(alpha, losses)
    loss = weighted_sum(losses, alpha, all_reduce, normalise)
    step = dict(zip(moving, gradients_of(loss, [named[name] for name in moving], all_reduce, keep_graph)))
    fast = {name: (named[name].detach() - lr * step[name]).requires_grad_(True) for name in moving}
    clean_logits, _ = functional_call(model, ({**fast, **fixed}, scratch_buffers(buffers)), (clean_images,))
    clean_loss = F.cross_entropy(wide(clean_logits), clean_labels, reduction="sum")
    found = torch.autograd.grad(clean_loss, list(fast.values()), allow_unused=True)
    v = {name: all_reduce(torch.zeros_like(fast[name]) if d is None else d).detach() for name, d in zip(moving, found)}

    def per_sample_losses(moving_params):
        out, _ = functional_call(model, ({**moving_params, **fixed}, scratch_buffers(buffers)), (images,))
        return F.cross_entropy(wide(out), labels, reduction="none")

    cuda = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.autocast(images.device.type, enabled=False), \
            warnings.catch_warnings():  # autocast: see the docstring
        # torch's forward-mode decompositions load through torch.jit.script on first use, which warns
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        set_random_state(before, images.device)  # the noisy forward's draws again; fork_rng restores the stream after
        _, u = jvp(per_sample_losses, ({name: named[name].detach() for name in moving},), (v,))
    weights = alpha.to(u.dtype)
    total = weight_total(weights, all_reduce, normalise)
    centred = u - all_reduce((weights * u).sum()) / total if normalise == "sum" else u
    alpha_grad = -lr * centred / total
    grads = [step[name] if name in step else torch.zeros_like(p) for name, p in named.items()]

    def regrad(new_alpha: torch.Tensor) -> list[torch.Tensor]:
        new_loss = weighted_sum(losses, new_alpha.detach(), all_reduce, normalise)
        found = dict(zip(moving, gradients_of(new_loss, [named[name] for name in moving], all_reduce)))
        return [found[name] if name in found else torch.zeros_like(p) for name, p in named.items()]

    return MetaResult(alpha_grad.detach(), grads, loss.detach(), logits.detach(), buffers, alpha,
                      regrad if keep_graph else None)


def scratch_buffers(buffers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of the buffers for a functional forward, whose running-statistics updates are thrown away."""
    return {name: b.clone() for name, b in buffers.items()}


def random_state(device: torch.device):
    """The CPU generator's state and, on an accelerator, that device's."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def set_random_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def head_meta_step(model: nn.Module, images, labels, alpha, clean_images, clean_labels, lr: float,
                   all_reduce: Callable = _identity) -> MetaResult:
    """Meta-gradient through a differentiable step of the classifier only (``higher`` on
    the head); the backbone's features of both batches are taken as fixed.

    BatchNorm, as in ``full_meta_step``: the statistics after the noisy forward are
    returned; the clean forward uses batch statistics and its changes to the running ones
    are discarded when the caller copies the returned buffers back."""
    head = model.backbone.get_classifier()
    alpha_var = alpha.detach().requires_grad_(True)
    logits, features = model(images)
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    loss = weighted_loss(logits, labels, alpha_var.detach(), all_reduce)
    params = list(model.parameters())
    grads = [torch.zeros_like(p) if g is None else all_reduce(g)
             for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params)]
    with torch.no_grad():
        _, clean_features = model(clean_images)
    inner = torch.optim.SGD(head.parameters(), lr=lr)
    with higher.innerloop_ctx(head, inner, copy_initial_weights=True) as (fhead, diffopt):
        head_loss = weighted_loss(fhead(features.detach()), labels, alpha_var, all_reduce)
        diffopt.step(head_loss, grad_callback=lambda gs: [all_reduce(g) for g in gs])
        clean_loss = F.cross_entropy(wide(fhead(clean_features)), clean_labels, reduction="sum")
        (alpha_grad,) = torch.autograd.grad(clean_loss, alpha_var)
    return MetaResult(alpha_grad.detach(), [g.detach() for g in grads], loss.detach(), logits.detach(), buffers)


def update_weights(alpha: torch.Tensor, logit: torch.Tensor, grad: torch.Tensor, step: float,
                   rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """New (alpha, logit) of a batch after one gradient step of size ``step``.

    ``logit``: the update accumulates in an unconstrained logit v, alpha = sigmoid(v)
    (v = 0 gives the initial 0.5), as the text describes.
    ``printed``: Algorithm 1 as printed, alpha ← sigmoid(alpha − step·grad − 0.5), which
    pulls every weight back towards 0.5 at each visit.
    """
    if rule == "logit":
        logit = logit - step * grad
        return torch.sigmoid(logit), logit
    alpha = torch.sigmoid(alpha - step * grad - 0.5)
    return alpha, torch.logit(alpha)
