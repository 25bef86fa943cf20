"""A pytest plugin for method authors: the ``noisybench_run`` fixture.

Installed with noisybench (entry point ``pytest11``), so a plugin's own tests can train it
on tiny data in seconds::

    def test_gce(noisybench_run):
        record = noisybench_run("gce", "noise=symmetric:0.4", "epochs=4")
        assert record["test"]["accuracy"] > 0.5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

TINY = ["progress=false", "data.num_workers=0", "epochs=3", "model.name=small_cnn"]


class Record(dict):
    """A run's record (metrics.json) with ``folder``, the run folder (samples.csv, checkpoint/...)."""

    folder: Path


@pytest.fixture
def noisybench_run(tmp_path: Path) -> Callable[..., Record]:
    """``noisybench_run(method, *overrides, dataset="digits", plugins=())``: train ``method``
    on tiny data (digits, small_cnn, 3 epochs unless overridden) in a folder of its own
    under the test's tmp_path; returns the record, with ``.folder``."""
    from noisybench.api import run

    count = {"runs": 0}

    def train(method: str, *overrides: str, dataset: str = "digits", plugins: Any = ()) -> Record:
        count["runs"] += 1
        folder = tmp_path / f"noisybench_run{count['runs']}_{method}"
        record = Record(run(method, dataset, folder, [*TINY, *overrides], plugins=plugins))
        record.folder = folder
        return record

    return train
