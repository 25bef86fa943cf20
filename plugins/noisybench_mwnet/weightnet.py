"""Meta-Weight-Net's weighting function V(L; phi) and one step of its Algorithm 1.

One step on a noisy batch B and a clean (meta) batch B^m, as the authors' ``MW-Net.py``:

  1. w_i = V(L_i(Theta); phi) on the noisy batch's losses (taken as data, no gradient to Theta);
     Theta'(phi) = Theta − lr · grad_Theta( sum_i w_i L_i / Z ),  Z = n (``mean``) or sum_i w_i (``sum``)
  2. phi ← phi − optimiser( grad_phi L_meta(Theta'(phi)) ),  L_meta = mean cross-entropy on B^m,
     grad_phi = sum_i (d L_meta / d w_i) · d w_i / d phi
  3. w'_i = V(L_i(Theta); phi'), and Theta takes the run's optimiser step on sum_i w'_i L_i / Z'.

d L_meta / d w_i is LSW's exact meta-gradient (``noisybench_lsw.meta``: ``jvp`` by the chain
rule and one forward-mode pass, or ``higher`` through the step's graph) divided by |B^m|
(LSW's clean loss is a sum, the authors' a mean); the chain rule through V is one backward of
the 1-100-1 network. Step 3 back-propagates the noisy forward of step 1 a second time with w'
(its graph is kept), where the authors run the model forward again: the same losses and
BatchNorm statistics, one forward fewer.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from noisybench.floats import wide
from noisybench_lsw.meta import weighted_sum


class WeightNet(nn.Module):
    """V(L; phi): an MLP 1 → hidden → 1, ReLU, then a sigmoid (the authors' ``VNet(1, 100, 1)``,
    torch's default initialisation as theirs)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.linear1 = nn.Linear(1, hidden)
        self.linear2 = nn.Linear(hidden, 1)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        """One weight in (0, 1) per loss: (n,) → (n,)."""
        return torch.sigmoid(self.linear2(torch.relu(self.linear1(losses[:, None])))).squeeze(1)


def weight_optimizer(net: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adam``: Adam (MW-Net.py); ``sgd``: SGD, momentum 0.9, Nesterov (train_WRN-28-10_Meta_PGC.py)."""
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


class WeightStep(NamedTuple):
    grads: list[torch.Tensor]  # the model's gradient with the new weights, for the run's optimiser
    weights: torch.Tensor  # w' = V(L; phi') of the noisy batch (the weights Theta trains with)
    loss: torch.Tensor  # sum_i w'_i L_i / Z' (this process's share, detached)
    logits: torch.Tensor  # the noisy batch's logits (detached)
    buffers: dict[str, torch.Tensor]  # BatchNorm statistics after the noisy forward
    weight_grad: torch.Tensor  # d L_meta / d w_i of the step's weights w


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def weights_of(net: nn.Module, losses: torch.Tensor) -> torch.Tensor:
    """V(L; phi) in V's precision (float32 unless made wider), outside any autocast: a 1-100-1
    network, whose precision costs nothing."""
    with torch.autocast(losses.device.type, enabled=False):
        return net(losses.to(next(net.parameters()).dtype))


def meta_weight_step(model: nn.Module, images, labels, clean_images, clean_labels, lr: float, net: nn.Module,
                     net_optimizer: torch.optim.Optimizer, meta: Callable, normalise: str = "mean",
                     all_reduce: Callable = _identity) -> WeightStep:
    """Steps 1–3 of the module docstring; ``phi`` moves here, Theta's gradient is returned.
    ``meta``: ``jvp_meta_step`` or ``full_meta_step``; ``all_reduce``: sums over processes."""
    kept: dict[str, torch.Tensor] = {}

    def weigh(losses: torch.Tensor) -> torch.Tensor:
        kept["w"] = weights_of(net, losses)  # with its graph to phi
        return kept["w"]

    result = meta(model, images, labels, weigh, clean_images, clean_labels, lr, all_reduce, normalise=normalise,
                  keep_graph=True)
    w = kept["w"]
    count = all_reduce(torch.full((), float(len(clean_labels)), dtype=w.dtype, device=w.device))
    weight_grad = result.alpha_grad.to(w.dtype) / count  # the authors' L_meta is a mean over the meta batch
    net_optimizer.zero_grad(set_to_none=True)
    w.backward(weight_grad)
    for parameter in net.parameters():
        parameter.grad = all_reduce(parameter.grad)
    net_optimizer.step()
    losses = F.cross_entropy(wide(result.logits), labels, reduction="none")  # step 1's losses, again
    with torch.no_grad():
        new = weights_of(net, losses)
    grads = result.regrad(new)
    loss = weighted_sum(losses, new.to(losses.dtype), all_reduce, normalise)
    return WeightStep(grads, new, loss.detach(), result.logits, result.buffers, weight_grad)
