"""The cost of a loss method's training step against cross-entropy's, in CPU time.

On a shared machine the wall time of an epoch swings with the load (method_overhead.py's
interleaved epochs then give ratios from 0.7 to 1.2 for the same code); the CPU time the
thread spends on one step swings far less. This times whole training steps (forward pass,
the method's loss hook as the core's default step calls it, backward, SGD step) of the
digits model, ``small_cnn`` on 8×8 images, batch 64 (digits' recipe), for ce and each
method in turn, ``reps`` interleaved rounds, and prints min and median CPU milliseconds
and their ratio to ce. A step ratio bounds the epoch ratio from above: an epoch adds
evaluation and a checkpoint that cost the same for every method.
Run: OMP_NUM_THREADS=1 python benchmarks/loss_step_cost.py [reps=2000] [classes=10]
"""

from __future__ import annotations

import statistics
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from common import hardware

from noisybench.models import SmallCNN
from noisybench_backward import noisybench_loss as backward_hook
from noisybench_forward import noisybench_loss as forward_hook
from noisybench_sop import noisybench_loss as sop_hook
from noisybench_transition.matrix import known_transition
from noisybench.noise import parse_noise

BATCH, TRAIN = 64, 1078


def method_run(classes: int) -> SimpleNamespace:
    """What the hooks read of a run on one process: T, scores, u and v, options."""
    transition = torch.as_tensor(known_transition(parse_noise("symmetric:0.4"), classes, "digits", []))
    return SimpleNamespace(state={"transition": transition, "noise_score": torch.zeros(TRAIN),
                                  "u": torch.randn(TRAIN) * 1e-8, "v": torch.randn(TRAIN, classes) * 1e-8},
                           scratch={}, accelerator=SimpleNamespace(num_processes=1),
                           options={"lr_u": 1.0, "lr_v": 10.0})


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args)
    reps, classes = int(own.get("reps", 2000)), int(own.get("classes", 10))
    torch.manual_seed(0)
    model = SmallCNN(num_classes=classes, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.randn(BATCH, 1, 8, 8), torch.randint(0, classes, (BATCH,))
    indices = torch.randperm(TRAIN)[:BATCH]
    runs = {name: method_run(classes) for name in ("forward", "backward", "sop")}
    losses = {"ce": lambda z: F.cross_entropy(z.float(), labels),
              "forward": lambda z: forward_hook(run=runs["forward"], logits=z, labels=labels, indices=indices),
              "backward": lambda z: backward_hook(run=runs["backward"], logits=z, labels=labels, indices=indices),
              "sop": lambda z: sop_hook(run=runs["sop"], logits=z, labels=labels, indices=indices)}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for _ in range(reps):
        for name, loss_of in losses.items():
            start = time.thread_time()
            loss = loss_of(model(images))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[name].append(time.thread_time() - start)
    print(f"# {hardware()}")
    print(f"# small_cnn, 8x8 inputs, batch {BATCH}, {classes} classes; {reps} interleaved rounds; CPU time per step")
    low, mid = min(times["ce"]), statistics.median(times["ce"])
    for name, values in times.items():
        print(f"{name:<10} min {1e3 * min(values):7.3f} ms  median {1e3 * statistics.median(values):7.3f} ms  "
              f"ratio min {min(values) / low:5.3f}  median {statistics.median(values) / mid:5.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
