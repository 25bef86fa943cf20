from __future__ import annotations

import json
from pathlib import Path

import pytest

from noisybench import hookimpl
from noisybench.api import run

FAST = ["progress=false"]


def run_digits(output: Path, *overrides: str, method: str = "ce", plugins=(), resume: bool = False) -> dict:
    """Train on digits in this process with quiet output."""
    return run(method, "digits", output, [*FAST, *overrides], resume=resume, plugins=plugins)


def read_metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="session")
def clean_ce_run(tmp_path_factory) -> Path:
    """One finished cross-entropy run on noise-free digits, shared by read-only tests."""
    folder = tmp_path_factory.mktemp("clean_ce")
    run_digits(folder, "epochs=6")
    return folder


def noisybench_subprocess(*args: str, processes: int = 1, timeout: int = 600):
    """`noisybench ARGS` in a fresh interpreter, under torchrun with several processes (`--standalone`:
    a free rendezvous port, so tests running side by side never meet on one)."""
    import os
    import subprocess
    import sys

    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *launcher, "-m", "noisybench", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


HOLDER = ("import sys, time\nfrom noisybench.lock import RunLock\nlock = RunLock(sys.argv[1])\nlock.acquire()\n"
          "print('held', flush=True)\ntime.sleep(120)\n")


def hold_lock(folder: Path):
    """A process holding ``folder``'s run lock (as a live run does) until it is killed."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


class CrashAt:
    """Stands in for a kill in the middle of a run."""

    def __init__(self, epoch):
        self.epoch = epoch

    @hookimpl
    def noisybench_epoch_start(self, epoch):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


class BestAt:
    """Weights set by hand, so the best val epoch is ``epoch`` on any CPU: after every other
    training epoch the classifier is zeroed (every prediction class 0, val accuracy the share of
    class 0); after ``epoch`` it is the model the training gave (digits: far above that share)."""

    def __init__(self, epoch):
        self.epoch = epoch

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        if epoch != self.epoch:
            import torch

            head = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                head.weight.zero_()
                head.bias.zero_()


class CrashMidEpoch:
    """Stands in for a kill in the middle of epoch ``epoch``, before its ``step``-th batch."""

    def __init__(self, epoch, step=3):
        self.epoch, self.step, self.seen = epoch, step, 0

    @hookimpl
    def noisybench_train_step(self, run):
        if run.epoch == self.epoch:
            self.seen += 1
            if self.seen == self.step:
                raise KeyboardInterrupt("simulated crash")


class Payload:
    """Unpickling this creates the file ``marker``: the code a hostile file would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def comparable(metrics):
    """Everything but timings and the environment."""
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in metrics["history"]]
    return {k: metrics[k] for k in ("test", "best_val", "labels", "detection")} | {"history": history}


def resumed_like_straight(tmp_path: Path, method: str, *overrides: str, crash_at: int = 3,
                          crash=None, watch=()) -> tuple[dict, dict]:
    """Run straight through (with the plugins ``watch``, which must not change the run), and
    again killed at the start of epoch ``crash_at`` (or by the plugin ``crash``) and resumed;
    check both records and samples.csv agree and return (straight, resumed) metrics."""
    import pandas as pd

    straight = run_digits(tmp_path / "a", *overrides, method=method, plugins=watch)
    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path / "b", *overrides, method=method, plugins=[crash or CrashAt(crash_at)])
    resumed = run_digits(tmp_path / "b", resume=True, method=method)
    assert comparable(resumed) == comparable(straight)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "samples.csv"), pd.read_csv(tmp_path / "b" / "samples.csv"))
    return straight, resumed
