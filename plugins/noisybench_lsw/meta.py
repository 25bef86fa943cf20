"""The meta-gradient of Learn Sample Weights (Algorithm 1): d L_clean(Theta'(alpha)) / d alpha.

Theta'(alpha) = Theta − lr·grad_Theta( sum_i alpha_i L_i / sum_i alpha_i )       (eq. 1)
g_i           = d/d alpha_i  sum_{j in B^c} L(f_{Theta'(alpha)}(x_j), y_j)       (eq. 2)

``full_meta_step`` differentiates through a step of every parameter with ``higher``;
``head_meta_step`` only through the classifier's step, with the backbone's features held
fixed (as FSR restricts its meta-gradient to the last layers): far cheaper, approximate.
Both also return the gradient of the weighted loss for the real optimiser step, so the
noisy batch costs one forward and one backward, and the clean batch one more of each.

Under several processes pass ``all_reduce``: the weighted loss is normalised by the
global sum of alpha and the step uses the sum of every process's gradient, both through
a differentiable all-reduce, so Theta' and the meta-gradient equal those of one process
holding the union of the batches.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import higher
import torch
import torch.nn.functional as F
from torch import nn


class MetaResult(NamedTuple):
    alpha_grad: torch.Tensor  # d L_clean / d alpha, one per noisy sample
    grads: list[torch.Tensor]  # gradient of the weighted loss for every parameter (detached)
    loss: torch.Tensor  # the weighted noisy loss (detached)
    logits: torch.Tensor  # noisy-batch logits (detached)
    buffers: dict[str, torch.Tensor]  # BatchNorm statistics after the noisy forward


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor,
                  all_reduce: Callable = _identity) -> torch.Tensor:
    """sum_i alpha_i L_i / sum_i alpha_i over the (global) batch; this process's share."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (alpha * losses).sum() / all_reduce(alpha.sum()).clamp_min(1e-12)


def full_meta_step(model: nn.Module, images, labels, alpha, clean_images, clean_labels, lr: float,
                   all_reduce: Callable = _identity) -> MetaResult:
    """Meta-gradient through one differentiable SGD step of all parameters (``higher``).

    BatchNorm: ``higher`` runs the model on a copy of its buffers; the statistics after
    the noisy forward are returned for the caller to keep, and the clean forward (on
    Theta', batch statistics) changes nothing.
    """
    alpha = alpha.detach().requires_grad_(True)
    inner = torch.optim.SGD(model.parameters(), lr=lr)
    captured: list[torch.Tensor] = []
    params = list(model.parameters())

    def reduce_and_keep(grads):
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
        grads = [all_reduce(g) for g in grads]
        captured.extend(g.detach() for g in grads)
        return grads

    with higher.innerloop_ctx(model, inner, copy_initial_weights=True) as (fmodel, diffopt):
        logits, _ = fmodel(images)
        buffers = {name: b.detach().clone() for name, b in fmodel.named_buffers()}
        loss = weighted_loss(logits, labels, alpha, all_reduce)
        diffopt.step(loss, grad_callback=reduce_and_keep)
        clean_logits, _ = fmodel(clean_images)
        clean_loss = F.cross_entropy(clean_logits.float(), clean_labels, reduction="sum")
        (alpha_grad,) = torch.autograd.grad(clean_loss, alpha)
    return MetaResult(alpha_grad.detach(), captured, loss.detach(), logits.detach(), buffers)


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
        clean_loss = F.cross_entropy(fhead(clean_features).float(), clean_labels, reduction="sum")
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
