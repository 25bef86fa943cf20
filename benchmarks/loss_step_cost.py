"""The CPU time of a training step of each loss-family method against cross-entropy's.

On a shared machine the wall time of an epoch swings with the load (method_overhead.py's
interleaved epochs give ratios from 0.7 to 1.3 for the same code there); the CPU time the
thread spends on one step swings far less. This times whole training steps (forward pass,
the method's loss hook as the core's default step calls it, past any warm-up, backward, SGD
step) of ``small_cnn`` on ``size``×``size`` one-channel images (8: digits; 28: the
Fashion-MNIST subset), batch 64, for ce and each method in turn, ``reps`` interleaved
rounds (each starting at another contender, so that none always runs first), and prints
min and median CPU milliseconds and their ratio to ce; ``ce again`` times ce a second time,
the noise floor of a ratio here. An epoch adds
evaluation and a checkpoint that cost the same for every method, so the step ratio bounds
the epoch ratio from above. The losses' own work does not grow with the image; the
network's does, so the ratio falls toward 1 as images grow. (peer's ``draw=dataset``
forwards 2n images per step and forward/backward's T estimation is a pass of its own:
method_overhead.py times those.)
Run: OMP_NUM_THREADS=1 python benchmarks/loss_step_cost.py [reps=2000] [size=8] [classes=10]
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
from noisybench.noise import parse_noise
from noisybench.plugins import load_method
from noisybench_transition.matrix import known_transition

BATCH, TRAIN = 64, 1078
METHODS = ("gce", "sce", "apl", "bootstrap", "gls", "peer", "forward", "backward", "sop")
NO_SETUP = ("peer", "forward", "backward", "sop")  # their setup needs a whole run; their state is set below


def method_state(classes: int) -> dict:
    """What forward, backward and sop read of a run's state: a known T, scores, u and v."""
    transition = torch.as_tensor(known_transition(parse_noise("symmetric:0.4"), classes, "digits", []))
    return {"transition": transition, "noise_score": torch.zeros(TRAIN),
            "u": torch.randn(TRAIN) * 1e-8, "v": torch.randn(TRAIN, classes) * 1e-8}


def loss_of(method: str, labels: torch.Tensor, indices: torch.Tensor, classes: int):
    """The method's loss hook with its documented defaults on digits, called as the core's step calls it."""
    plugin = load_method(method)
    config = make_config(method, "digits", overrides=["noise=symmetric:0.4"])
    run = SimpleNamespace(options=config[method], state=method_state(classes),
                          scratch={"alpha": 0.5, "peer_generator": torch.Generator()},
                          num_train=TRAIN, accelerator=SimpleNamespace(num_processes=1))
    if hasattr(plugin, "noisybench_setup") and method not in NO_SETUP:
        plugin.noisybench_setup(run=run)
    wanted = inspect.signature(plugin.noisybench_loss).parameters
    extra = {"indices": indices, "epoch": config["epochs"]}
    return lambda z: plugin.noisybench_loss(run=run, logits=z, labels=labels,
                                            **{k: v for k, v in extra.items() if k in wanted})


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args)
    reps, size, classes = int(own.get("reps", 2000)), int(own.get("size", 8)), int(own.get("classes", 10))
    torch.manual_seed(0)
    model = SmallCNN(num_classes=classes, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.randn(BATCH, 1, size, size), torch.randint(0, classes, (BATCH,))
    indices = torch.randperm(TRAIN)[:BATCH]
    ce = lambda z: F.cross_entropy(z.float(), labels)  # noqa: E731
    losses = {"ce": ce, "ce again": ce}  # the second ce: how far two runs of the same step differ here
    losses |= {m: loss_of(m, labels, indices, classes) for m in METHODS}
    times: dict[str, list[float]] = {name: [] for name in losses}
    names = list(losses)
    for round_index in range(reps):
        shift = round_index % len(names)  # each round starts elsewhere: no contender is always first or last
        for name in names[shift:] + names[:shift]:
            loss_fn = losses[name]
            start = time.thread_time()
            loss = loss_fn(model(images))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times[name].append(time.thread_time() - start)
    print(f"# {hardware()}")
    print(f"# small_cnn, {size}x{size} inputs, batch {BATCH}, {classes} classes; {reps} interleaved rounds; "
          "CPU time per step")
    low, mid = min(times["ce"]), statistics.median(times["ce"])
    for name, values in times.items():
        print(f"{name:<10} min {1e3 * min(values):7.3f} ms  median {1e3 * statistics.median(values):7.3f} ms  "
              f"ratio min {min(values) / low:5.3f}  median {statistics.median(values) / mid:5.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
