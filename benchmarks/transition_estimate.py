"""How well the anchor-point rule estimates T from forward's first model, and what the
authors' in-place side effect would change.

Trains ``forward`` with its documented defaults up to the epoch where it estimates T, takes
the softmax outputs on the training images that the estimate uses, and prints for each seed
the error ‖T̂ − T‖₁/‖T‖₁ against the run's known T of: the 97th-percentile rule as
noisybench computes it, the same with the side effect of the authors' ``NoiseEstimator.fit``
(it zeroes the top entries of column i in the output matrix itself, so the rows of the
classes after i read the zeroed values), and the plain arg-max (percentile 100).
Run: python benchmarks/transition_estimate.py [dataset=digits] [seeds=0,1,2] [key=value ...]
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch
from common import hardware

from noisybench import hookimpl
from noisybench.api import make_config
from noisybench.engine import train
from noisybench.noise import parse_noise
from noisybench_transition.matrix import anchor_transition, estimation_error, known_transition


class Captured(Exception):
    """Ends the run once the outputs are taken."""


class Capture:
    """Takes the training set's softmax outputs where forward is about to estimate T."""

    def __init__(self, epoch: int):
        self.epoch, self.probs, self.classes = epoch, None, None

    @hookimpl(tryfirst=True)
    def noisybench_epoch_start(self, run, epoch):
        if epoch == self.epoch:
            self.probs = torch.softmax(run.predict()[0].float(), dim=1).cpu().numpy()
            self.classes = run.class_names
            raise Captured


def with_side_effect(probs: np.ndarray, percentile: float) -> np.ndarray:
    """The authors' loop as it runs: ``robust_eta`` is a view of the output matrix, so the
    zeroing of class i's top outputs stays for the rows of later classes."""
    eta = probs.astype(np.float64).copy()
    matrix = np.empty((eta.shape[1], eta.shape[1]))
    for i in range(eta.shape[1]):
        column = eta[:, i]  # a view, as eta_corr[:, i]
        column[column >= np.percentile(column, percentile, method="higher")] = 0.0
        matrix[i] = eta[int(np.argmax(column))]
    return matrix / matrix.sum(axis=1, keepdims=True)


def main(args: list[str]) -> None:
    own = dict(a.split("=", 1) for a in args if a.split("=", 1)[0] in ("dataset", "seeds"))
    overrides = ["progress=false", "noise=symmetric:0.4", *[a for a in args if a.split("=", 1)[0] not in own]]
    print(f"# {hardware()}")
    for seed in own.get("seeds", "0,1,2").split(","):
        config = make_config("forward", own.get("dataset", "digits"), overrides=[*overrides, f"seed={seed}"])
        capture = Capture(config["forward"]["estimate_epochs"] + 1)
        with tempfile.TemporaryDirectory() as out:
            try:
                train(config, out, plugins=[capture])
            except (Captured, KeyboardInterrupt):
                pass
        truth = known_transition(parse_noise(config["noise"]), capture.probs.shape[1], config["dataset"],
                                 capture.classes)
        q = config["forward"]["anchor_percentile"]
        ours, theirs = anchor_transition(capture.probs, q), with_side_effect(capture.probs, q)
        print(f"{config['dataset']} {config['noise']} seed {seed}: first model {capture.epoch - 1} epochs; error "
              f"percentile {q:g} {estimation_error(ours, truth):.4f}, with the side effect "
              f"{estimation_error(theirs, truth):.4f} (max |difference| {np.abs(ours - theirs).max():.2e}), "
              f"arg-max {estimation_error(anchor_transition(capture.probs, 100.0), truth):.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
