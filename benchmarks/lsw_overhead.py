"""Step time and memory of LSW's meta step against a plain cross-entropy step.

On the same model, batches and device, in interleaved rounds of 20 steps each:
  ce           forward, backward, SGD step
  lsw jvp      exact meta-gradient by the chain rule and one forward-mode pass (the default)
  lsw higher   exact meta-gradient through a differentiable step of every parameter (higher)
  lsw head     approximate: through a step of the classifier only
with the clean batch the size of the noisy batch and at the paper's 250. Memory: bytes the
autograd graph saves for backward during one step (any device), and on a GPU the peak
allocated memory; both as ratios to ce (the paper reports +35%).
``pixels=P`` trains on random 3×P×P images instead of digits (e.g. pixels=32 model.name=resnet18,
where the step is bound by arithmetic rather than by per-operation overhead).
Run: python benchmarks/lsw_overhead.py [rounds=N] [pixels=P] [key=value ...]   (default: digits, small_cnn, batch 64, 7 rounds)
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from common import hardware, interleaved, ratio_line

from noisybench.api import make_config
from noisybench.datasets import build_dataset
from noisybench.models import create_model
from noisybench_lsw.meta import full_meta_step, head_meta_step, jvp_meta_step, update_weights

FORMS = {"lsw jvp": jvp_meta_step, "lsw higher": full_meta_step, "lsw head": head_meta_step}


def batches(dataset, size, device, count, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        idx = torch.randint(0, len(dataset), (size,), generator=g).tolist()
        items = [dataset[i] for i in idx]
        out.append((torch.stack([t[0] for t in items]).to(device), torch.stack([t[1] for t in items]).to(device)))
    return out


def ce_step(model, optimizer, images, labels, *_):
    logits, _ = model(images)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def lsw_step(meta):
    def step(model, optimizer, images, labels, clean_images, clean_labels):
        alpha = torch.full((len(labels),), 0.5, device=images.device)
        result = meta(model, images, labels, alpha, clean_images, clean_labels, optimizer.param_groups[0]["lr"])
        update_weights(alpha, torch.zeros_like(alpha), result.alpha_grad, 20.0, "logit")
        for p, g in zip(model.parameters(), result.grads):
            p.grad = g
        optimizer.step()
    return step


def saved_bytes(step, *args) -> int:
    """Bytes of the distinct tensors autograd saves for backward during one step."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(*args)
    return sum(seen.values())


def peak_gpu(step, *args) -> int | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats()
    step(*args)
    return torch.cuda.max_memory_allocated()


def random_batches(pixels, size, device, count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, pixels, pixels, generator=g).to(device),
             torch.randint(0, 10, (size,), generator=g).to(device)) for _ in range(count)]


def setup(args: list[str]) -> tuple:
    """What both meta-step benchmarks measure on: ``rounds=N`` and ``pixels=P`` (random images
    of that size instead of digits) from ``args``, the rest config overrides of a ce run.
    Returns (rounds, pixels, config, device, splits, model, optimizer, batch size)."""
    own = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("rounds", "pixels"))
    rounds, pixels = int(own.get("rounds", 7)), int(own.get("pixels", 0))
    overrides = [a for a in args if a.split("=", 1)[0] not in own]
    config = make_config("ce", "digits", overrides=["progress=false", *overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits = None if pixels else build_dataset(config)
    model = create_model(config["model"], 10 if pixels else splits.num_classes, 3 if pixels else splits.channels,
                         None if pixels else splits.normalization).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["optimizer"]["lr"], momentum=0.9)
    return rounds, pixels, config, device, splits, model, optimizer, config["batch_size"]


def main(args: list[str]) -> None:
    rounds, pixels, config, device, splits, model, optimizer, size = setup(args)

    def draw(count_size, seed):
        if pixels:
            return random_batches(pixels, count_size, device, 20, seed)
        return batches(splits.train, count_size, device, 20, seed)

    noisy = draw(size, 0)
    print(f"# {hardware()}")
    data = f"random 3x{pixels}x{pixels} images" if pixels else "digits"
    print(f"# {data}, model {config['model']['name']}, noisy batch {size}, {rounds} interleaved rounds of 20 steps; "
          "ratios to ce over the rounds' min and median")
    steps = {"ce": ce_step, **{name: lsw_step(meta) for name, meta in FORMS.items()}}
    for clean_size in (size, 250):
        clean = draw(clean_size, 1)

        def run_steps(step):
            return lambda: [step(model, optimizer, x, y, xc, yc) for (x, y), (xc, yc) in zip(noisy, clean)]

        times = interleaved({name: run_steps(step) for name, step in steps.items()}, rounds)
        first = (model, optimizer, *noisy[0], *clean[0])
        saved = {name: saved_bytes(step, *first) for name, step in steps.items()}
        peaks = {name: peak_gpu(step, *first) for name, step in steps.items()}
        print(f"clean batch {clean_size}:")
        for name in steps:
            line = ratio_line(name, times[name], times["ce"], unit=1000 / 20, label="ms/step")
            line += f"  saved-for-backward ratio {saved[name] / saved['ce']:.2f}"
            if peaks[name] is not None:
                line += f"  peak GPU memory ratio {peaks[name] / peaks['ce']:.2f}"
            print("  " + line)


if __name__ == "__main__":
    main(sys.argv[1:])
