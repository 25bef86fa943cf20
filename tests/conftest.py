from __future__ import annotations

import json
from pathlib import Path

import pytest

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
    """`noisybench ARGS` in a fresh interpreter, under torchrun with several processes."""
    import os
    import subprocess
    import sys

    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *launcher, "-m", "noisybench", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)
