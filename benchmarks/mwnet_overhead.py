"""Step time of Meta-Weight-Net against a cross-entropy step and against its floor.

Meta-Weight-Net's exact step needs LSW's exact meta-gradient (noisy forward and backward,
clean forward and backward at Theta', one JVP of the noisy batch) plus one more backward of
the noisy batch, with the weights of the updated V (the authors run the model forward again
for it; here the noisy forward's graph is kept). Its floor is therefore an LSW ``jvp`` step
plus one backward. Measured on the same model, batches and device, in interleaved rounds of
20 steps each (the meta batch the size of the noisy batch, as the authors):
  ce            forward, backward, SGD step
  backward      the noisy backward alone (a forward outside the timer's share: ce − forward)
  lsw jvp       LSW's exact step (noisybench_lsw), weights given
  mwnet jvp     Meta-Weight-Net's step as the run takes it (V, its Adam step, the second backward)
  mwnet higher  the same through higher's differentiable step (the reference)
Printed: min and median ms per step, ratios to ce, and mwnet jvp over the floor
(lsw jvp + backward, each from the same rounds).
Run: python benchmarks/mwnet_overhead.py [rounds=N] [pixels=P] [key=value ...]   (default: digits, small_cnn, batch 64, 7 rounds)
"""

from __future__ import annotations

import statistics
import sys

import torch
from common import hardware, interleaved, ratio_line
from lsw_overhead import batches, ce_step, lsw_step, random_batches, setup

from noisybench_lsw.meta import full_meta_step, jvp_meta_step
from noisybench_mwnet.weightnet import WeightNet, meta_weight_step, weight_optimizer


def forward_step(model, optimizer, images, labels, *_):
    with torch.no_grad():
        model(images)


def mwnet_step(meta):
    net = WeightNet()
    net_optimizer = weight_optimizer(net, "adam", 1e-3, 1e-4)

    def step(model, optimizer, images, labels, clean_images, clean_labels):
        net.to(images.device)
        out = meta_weight_step(model, images, labels, clean_images, clean_labels, optimizer.param_groups[0]["lr"], net,
                               net_optimizer, meta, "mean")
        for p, g in zip(model.parameters(), out.grads):
            p.grad = g
        optimizer.step()
    return step


def main(args: list[str]) -> None:
    rounds, pixels, config, device, splits, model, optimizer, size = setup(args)
    draw = (lambda seed: random_batches(pixels, size, device, 20, seed)) if pixels else \
        (lambda seed: batches(splits.train, size, device, 20, seed))
    noisy, clean = draw(0), draw(1)
    steps = {"ce": ce_step, "forward": forward_step, "lsw jvp": lsw_step(jvp_meta_step),
             "mwnet jvp": mwnet_step(jvp_meta_step), "mwnet higher": mwnet_step(full_meta_step)}

    def run_steps(step):
        return lambda: [step(model, optimizer, x, y, xc, yc) for (x, y), (xc, yc) in zip(noisy, clean)]

    for step in steps.values():  # first calls load torch's forward-mode rules and allocate: not timed
        step(model, optimizer, *noisy[0], *clean[0])
    times = interleaved({name: run_steps(step) for name, step in steps.items()}, rounds)
    times["backward"] = [c - f for c, f in zip(times["ce"], times["forward"])]
    floor = [a + b for a, b in zip(times["lsw jvp"], times["backward"])]
    data = f"random 3x{pixels}x{pixels} images" if pixels else "digits"
    print(f"# {hardware()}")
    print(f"# {data}, model {config['model']['name']}, noisy and meta batch {size}, {rounds} interleaved rounds of "
          "20 steps; ratios to ce over the rounds' min and median")
    for name in ("ce", "forward", "backward", "lsw jvp", "mwnet jvp", "mwnet higher"):
        print("  " + ratio_line(name, times[name], times["ce"], unit=1000 / 20, label="ms/step"))
    print("  " + ratio_line("floor (lsw jvp + backward)", floor, times["ce"], unit=1000 / 20, label="ms/step"))
    over = [m / f for m, f in zip(times["mwnet jvp"], floor)]
    print(f"  mwnet jvp / floor, same round: min {min(over):.2f}  median {statistics.median(over):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
