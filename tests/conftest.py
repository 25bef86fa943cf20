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
