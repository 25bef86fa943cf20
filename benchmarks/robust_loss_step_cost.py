"""The CPU time of a training step of each robust loss against cross-entropy's.

The wall time of an epoch swings with a shared machine's load (method_overhead.py's
interleaved epochs give ratios from 0.7 to 1.3 for the same code there); the CPU time the
thread spends on one step swings far less. This times whole training steps (forward pass,
the method's loss hook with its documented defaults on digits, backward, SGD step) of the
digits model, ``small_cnn`` on 8×8 images, batch 64, for ce and each method in turn,
``reps`` interleaved rounds, and prints min and median CPU milliseconds and their ratio to
ce. An epoch adds evaluation and a checkpoint that cost the same for every method, so the
step ratio bounds the epoch ratio from above. (peer's ``draw=dataset`` forwards 2n images
per step: it is timed by method_overhead.py.)
Run: OMP_NUM_THREADS=1 python benchmarks/robust_loss_step_cost.py [reps=2000]
"""

from __future__ import annotations

import inspect
import statistics
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from common import hardware

from noisybench.api import make_config
from noisybench.models import SmallCNN
from noisybench.plugins import load_method

BATCH, TRAIN, CLASSES = 64, 1078, 10
METHODS = ("gce", "sce", "apl", "bootstrap", "gls", "peer")


def loss_of(method: str, labels: torch.Tensor, indices: torch.Tensor):
    """The method's loss hook, called as the core's default step calls it, past any warm-up."""
    plugin = load_method(method)
    config = make_config(method, "digits", overrides=["noise=symmetric:0.4"])
    options = config[method]  # the documented defaults, resolved for digits
    run = SimpleNamespace(options=options, state={}, scratch={"alpha": 0.5, "peer_generator": torch.Generator()},
                          num_train=TRAIN, accelerator=SimpleNamespace(num_processes=1))
    if hasattr(plugin, "noisybench_setup") and method != "peer":
        plugin.noisybench_setup(run=run)
    wanted = inspect.signature(plugin.noisybench_loss).parameters
    extra = {"indices": indices, "epoch": config["epochs"]}
    return lambda z: plugin.noisybench_loss(run=run, logits=z, labels=labels,
                                            **{k: v for k, v in extra.items() if k in wanted})


def main(args: list[str]) -> None:
    reps = int(dict(a.split("=", 1) for a in args).get("reps", 2000))
    torch.manual_seed(0)
    model = SmallCNN(num_classes=CLASSES, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.randn(BATCH, 1, 8, 8), torch.randint(0, CLASSES, (BATCH,))
    indices = torch.randperm(TRAIN)[:BATCH]
    losses = {"ce": lambda z: F.cross_entropy(z.float(), labels)}
    losses |= {m: loss_of(m, labels, indices) for m in METHODS}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(reps):
        for name, loss_fn in losses.items():
            start = time.thread_time()
            loss = loss_fn(model(images))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[name].append(time.thread_time() - start)
    print(f"# {hardware()}")
    print(f"# small_cnn, 8x8 inputs, batch {BATCH}, {CLASSES} classes; {reps} interleaved rounds; CPU time per step")
    low, mid = min(times["ce"]), statistics.median(times["ce"])
    for name, values in times.items():
        print(f"{name:<10} min {1e3 * min(values):7.3f} ms  median {1e3 * statistics.median(values):7.3f} ms  "
              f"ratio min {min(values) / low:5.3f}  median {statistics.median(values) / mid:5.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
