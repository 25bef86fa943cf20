"""Peer loss (Liu & Guo, ICML 2020): cross-entropy on each sample minus α times cross-entropy on independently drawn (image, label) pairs.

Per batch of n samples (x_i, y_i), with peer pairs (x_a(i), y_b(i)), a(i) ≠ b(i):

    ℓ(z, y) = −log(softmax(z)_y + 1e-5)            (the authors' "stable" CE)
    L = mean_i ℓ(f(x_i), y_i) − α(T) · mean_i ℓ(f(x_a(i)), y_b(i))

and, as the authors, the learning rate of epoch T is divided by 1 + α(T) (``scale_lr``).
``draw``: ``batch`` pairs each image of the batch with the label of another sample of the
batch (a random cyclic derangement: no extra forward pass); ``dataset`` draws n images and
n labels from the whole training set, as the authors' peer loader, and forwards the images
with the batch (one pass of 2n). ``alpha``: a number, a list of [epochs, from, to]
segments (NumPy linspace pieces, the authors' f_alpha; the last value holds), or ``auto``:
the authors' schedule for the dataset and noise, its segments scaled to the run's epochs
(CIFAR-10 and CIFAR-100 their own, sparse schedules for pair-flip noise; else their
MNIST/Fashion-MNIST one: α = 0 for 120 of 300 epochs, then 0 → 1).
"""

from __future__ import annotations

import numpy as np
import torch

from noisybench import hookimpl
from noisybench.floats import wide
from noisybench.errors import ConfigError
from noisybench.run import StepOutput

# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "peer loss",
    "paper": "Liu & Guo, ICML 2020",
    "code": "https://github.com/weijiaheng/Multi-class-Peer-Loss-functions",
    "checked": "the stable CE (+1e-5), the peer term on hand-drawn pairs, the α schedules (linspace segments) and the "
               "lr/(1 + α) of the authors' runner.py, gradients against finite differences, p → 0, p → 1, one class",
}
EPSILON = 1e-5  # CrossEntropyLossStable's
DRAWS = ("batch", "dataset")
SCHEDULES = {  # (dataset, noise family) -> (the authors' epochs, f_alpha's linspace segments)
    ("cifar10", "uniform"): (300, [[20, 0, 0], [20, 0, 0.1], [50, 1, 2], [50, 2, 2.5], [100, 2.5, 3.3], [100, 3.3, 5]]),
    ("cifar10", "sparse"): (300, [[20, 0, 0], [20, 0, 1], [50, 1, 2], [50, 2, 5], [100, 5, 10], [100, 10, 20]]),
    ("cifar100", "uniform"): (250, [[100, 0, 0], [150, 0.95, 0.95]]),
    ("cifar100", "sparse"): (250, [[110, 0, 0], [20, 0, 2], [70, 2, 10], [50, 10, 20]]),
    ("mnist", "uniform"): (300, [[120, 0, 0], [180, 0, 1]]),  # MNIST and Fashion-MNIST, any noise
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "alpha": "the peer term's weight: a number, [[epochs, from, to], ...] linspace segments, or auto (the "
             "authors' schedule for the dataset and noise, scaled to the run's epochs)",
    "draw": "peer pairs from the batch itself (batch: no extra pass) or from the whole training set (dataset: the "
            "authors', one forward of twice the batch)",
    "scale_lr": "divide each epoch's learning rate by 1 + alpha, as the authors",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {"alpha": "auto", "draw": "batch", "scale_lr": True}


@hookimpl
def noisybench_check_options(options: dict, config: dict) -> None:
    if options["draw"] not in DRAWS:
        raise ConfigError(f"config key 'peer.draw' expects one of {', '.join(DRAWS)}, got {options['draw']!r}")
    if options["alpha"] == "auto":  # resolved into the saved config
        options["alpha"] = authors_schedule(config["dataset"], config.get("noise"), config["epochs"])
    alpha = options["alpha"]
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha >= 0:
        options["alpha"] = float(alpha)
    elif not (isinstance(alpha, list) and alpha and all(valid_segment(s) for s in alpha)):
        raise ConfigError(f"config key 'peer.alpha' expects a number ≥ 0, a list of [epochs, from, to] segments "
                          f"or auto, got {alpha!r}")


def valid_segment(segment) -> bool:
    numbers = isinstance(segment, list) and len(segment) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in segment)
    return numbers and isinstance(segment[0], int) and segment[0] >= 1 and min(segment[1:]) >= 0


def authors_schedule(dataset: str, noise, epochs: int) -> list[list]:
    """The authors' f_alpha for ``dataset`` and ``noise``, cut at their epoch count and its
    segments' lengths scaled to ``epochs`` (their own at their epoch count)."""
    from noisybench.noise import parse_noise

    family = "sparse" if parse_noise(noise).type in ("asymmetric", "mapped") else "uniform"
    key = (dataset, family) if (dataset, family) in SCHEDULES else ("mnist", "uniform")
    total, segments = SCHEDULES[key]
    cut, used = [], 0
    for count, start, end in segments:  # f_alpha lists more values than their epochs: the tail is never used
        kept = min(count, total - used)
        if kept > 0:
            cut.append([kept, start, start + (end - start) * (kept - 1) / (count - 1) if count > 1 else end])
        used += kept
    scaled, done = [], 0
    for index, (count, start, end) in enumerate(cut):
        upto = round(epochs * sum(c for c, _, _ in cut[: index + 1]) / total)
        if upto > done:
            scaled.append([upto - done, float(start), float(end)])
        done = max(done, upto)
    return scaled


def alpha_at(alpha, epoch: int) -> float:
    """α of ``epoch`` (1-based): a constant, or the concatenated linspace segments (the last value holds)."""
    if isinstance(alpha, (int, float)):
        return float(alpha)
    values = np.concatenate([np.linspace(start, end, num=count) for count, start, end in alpha])
    return float(values[min(epoch, len(values)) - 1])


def stable_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample −log(softmax(z)_y + 1e-5), the authors' CrossEntropyLossStable."""
    p = wide(logits).softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
    return -torch.log(p + EPSILON)


def cyclic_derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """b with b[i] ≠ i for every i (n ≥ 2): one random cycle through all n positions."""
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(-1)
    return partner


def peer_loss(logits: torch.Tensor, labels: torch.Tensor, peer_logits: torch.Tensor, peer_labels: torch.Tensor,
              alpha: float) -> torch.Tensor:
    """mean ℓ(z, y) − α · mean ℓ(z_peer, y_peer)."""
    loss = stable_cross_entropy(logits, labels).mean()
    if alpha == 0:
        return loss
    return loss - alpha * stable_cross_entropy(peer_logits, peer_labels).mean()


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    """This epoch's α, its learning rate divided by 1 + α, and the generator of its peer draws
    (seeded by run, epoch and process: a resumed epoch draws the same pairs)."""
    alpha = alpha_at(run.options["alpha"], epoch)
    run.scratch["alpha"] = alpha
    run.scratch["peer_generator"] = torch.Generator().manual_seed(
        run.config["seed"] * 1_000_003 + epoch * 1_009 + run.accelerator.process_index)
    if run.options["scale_lr"]:
        run.scratch["scheduled_lr"] = [group["lr"] for group in run.optimizer.param_groups]
        for group in run.optimizer.param_groups:
            group["lr"] = group["lr"] / (1.0 + alpha)
    run.log(alpha=alpha)


@hookimpl
def noisybench_epoch_end(run) -> None:
    """Give the scheduler back its own learning rate (a chained schedule multiplies the last one)."""
    for group, lr in zip(run.optimizer.param_groups, run.scratch.pop("scheduled_lr", [])):
        group["lr"] = lr


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    if run.options["draw"] != "batch":
        return None
    if len(labels) < 2:  # no other sample to pair with
        return stable_cross_entropy(logits, labels).mean()
    partner = cyclic_derangement(len(labels), run.scratch["peer_generator"]).to(labels.device)
    return peer_loss(logits, labels, logits, labels[partner], run.scratch["alpha"])


@hookimpl
def noisybench_train_step(run, batch) -> StepOutput | None:
    """``draw=dataset``: n images and n labels drawn from the training set, forwarded with the batch."""
    if run.options["draw"] != "dataset":
        return None
    n, generator = len(batch.labels), run.scratch["peer_generator"]
    image_index = torch.randint(run.num_train, (n,), generator=generator)
    label_index = (image_index + torch.randint(1, max(2, run.num_train), (n,), generator=generator)) % run.num_train
    peer_images = run.views(image_index, count=1)[0]
    logits, _ = run.model(torch.cat([batch.images, peer_images.to(batch.images.dtype)]))
    peer_labels = run.noisy_labels[label_index].to(batch.labels.device)
    loss = peer_loss(logits[:n], batch.labels, logits[n:], peer_labels, run.scratch["alpha"])
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    return StepOutput(loss=loss.detach(), logits=logits[:n].detach())
