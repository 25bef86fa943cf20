"""Whole runs trained from inside a running run: a method's stage before its own training.

Confident learning (``cleanlab``) trains K fold runs before it trains on the cleaned labels.
``engine.train`` treats the process as its own: it reseeds every random generator, clears
Accelerate's shared state at its end and, under several processes, destroys the process
group there (``Accelerator.end_training``), and it stops routing Python warnings into the log.
Inside a running run each of these would shift or break the run that called it.
``train_inside`` trains one config into one folder (resuming it if it holds part of a run) and
puts all of it back, so the calling run goes on exactly as if nothing had run in between.
``random_streams_kept`` does the same for the random streams alone, around other work.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch


@contextmanager
def random_streams_kept() -> Iterator[None]:
    """Python's, numpy's and torch's random streams (CPU and every GPU) as they were before."""
    python, numpy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


@contextmanager
def calling_run_kept() -> Iterator[None]:
    """The calling run's random streams, Accelerate state, process group and warnings capture."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    saved = {cls: dict(cls._shared_state) for cls in (AcceleratorState, GradientState)}
    capturing = getattr(logging, "_warnings_showwarning", None) is not None
    destroy = PartialState.destroy_process_group
    PartialState.destroy_process_group = lambda self, group=None: None  # the calling run still needs its group
    try:
        with random_streams_kept():
            yield
    finally:
        PartialState.destroy_process_group = destroy
        for cls, state in saved.items():
            cls._shared_state.clear()
            cls._shared_state.update(state)
        logging.captureWarnings(capturing)


def train_inside(config: dict[str, Any], folder: str | Path) -> dict[str, Any]:
    """Train ``config`` into ``folder`` (resuming what it holds; a finished run is read back) from
    inside a running run; every process of that run calls it, as for any run."""
    from noisybench.engine import train
    from noisybench.errors import RunInterrupted

    with calling_run_kept():
        try:
            return train(config, folder, resume=True)
        except RunInterrupted:  # the calling run says how to go on: resuming it resumes this one
            raise KeyboardInterrupt(f"interrupted in the run in {folder}") from None
