"""Step time and memory of LSW's meta step against a plain cross-entropy step.

On the same model, batches and device, times (best of 7 interleaved rounds of 20 steps):
  ce            forward, backward, SGD step
  lsw all       meta-gradient through a step of every parameter (higher) + weight update + SGD step
  lsw head      meta-gradient through a step of the classifier only
with the clean batch the size of the noisy batch (the paper's 2x estimate assumes this)
and with the default 250. Memory: bytes the autograd graph saves for backward during one
step (any device), and on a GPU the peak allocated memory; both as ratios to ce
(the paper reports +35%).
Run: python benchmarks/lsw_overhead.py [key=value ...]   (default: digits, small_cnn, batch 64)
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from noisybench.api import make_config
from noisybench.datasets import build_dataset
from noisybench.models import create_model
from noisybench_lsw.meta import full_meta_step, head_meta_step, update_weights


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


def timed(step, model, optimizer, noisy, clean, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for (x, y), (xc, yc) in zip(noisy, clean):
        step(model, optimizer, x, y, xc, yc)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(noisy)


def peak_gpu(step, model, optimizer, noisy, clean, device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    step(model, optimizer, *noisy[0], *clean[0])
    return torch.cuda.max_memory_allocated()


def main(overrides: list[str]) -> None:
    config = make_config("ce", "digits", overrides=["progress=false", *overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    splits = build_dataset(config)
    model = create_model(config["model"], splits.num_classes, splits.channels).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["optimizer"]["lr"], momentum=0.9)
    size = config["batch_size"]
    noisy = batches(splits.train, size, device, 20)
    print(f"device {device}, model {config['model']['name']}, batch {size}")
    steps = {"ce": ce_step, "lsw all": lsw_step(full_meta_step), "lsw head": lsw_step(head_meta_step)}
    for clean_size in (size, 250):
        clean = batches(splits.train, clean_size, device, 20, seed=1)
        best = dict.fromkeys(steps, float("inf"))
        for _ in range(7):  # interleaved rounds, best of each: fair on a busy machine
            for name, step in steps.items():
                best[name] = min(best[name], timed(step, model, optimizer, noisy, clean, device))
        saved = {name: saved_bytes(step, model, optimizer, *noisy[0], *clean[0]) for name, step in steps.items()}
        peaks = {name: peak_gpu(step, model, optimizer, noisy, clean, device) for name, step in steps.items()}
        print(f"clean batch {clean_size}: ce {1000 * best['ce']:.1f} ms/step, saved for backward {saved['ce'] / 1e6:.1f} MB")
        for name in ("lsw all", "lsw head"):
            line = (f"  {name:<8} {1000 * best[name]:.1f} ms/step  time ratio {best[name] / best['ce']:.2f}  "
                    f"saved-for-backward ratio {saved[name] / saved['ce']:.2f}")
            if peaks[name] is not None:
                line += f"  peak GPU memory ratio {peaks[name] / peaks['ce']:.2f}"
            print(line)

if __name__ == "__main__":
    main(sys.argv[1:])
