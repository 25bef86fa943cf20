"""How many CPU threads a run's torch uses, and how OpenMP's idle threads wait.

On a machine that other jobs share, torch's default (one thread per core, OpenMP's idle
threads spinning) turns seconds of training into minutes: each parallel region waits for
a thread the scheduler has given to a neighbour, while the spinning ones burn the cores
the neighbours need. ``benchmarks/busy_machine.py`` measures the policies; the numbers are
in ``benchmarks/results/busy_machine_cpu.txt`` and docs/config.md (``threads``).

The policy, applied before torch is imported (``prefer_passive_wait``) and when a run is
built (``resolve``):

- OpenMP's wait policy is PASSIVE unless the user set ``OMP_WAIT_POLICY``: an idle thread
  sleeps instead of spinning, so it leaves its core to whoever needs it;
- ``threads=auto`` (the default) is one thread for the small-image pipeline (inputs under
  64 pixels, the ``small_cnn`` regime: its operations are too small for a second thread to
  pay for the hand-over) and torch's default otherwise. The rule reads the run's inputs
  only, never the machine's load, so one config computes the same floats on one machine
  whatever else runs there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

SMALL_INPUT = 64  # as the small-image pipeline (datasets.images.SMALL_IMAGE)
_process_default: list[int] = []  # torch's own thread count in this process, before any run set one


def prefer_passive_wait() -> None:
    """OMP_WAIT_POLICY=PASSIVE unless set: read once by OpenMP when torch loads, so this runs
    before torch is imported (a process that imported torch first keeps its policy)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def resolve(setting: Any, input_size: int) -> tuple[int, str]:
    """(threads, why) for the ``threads`` key: a number as given, ``null`` torch's default,
    ``auto`` one thread for inputs under ``SMALL_INPUT`` pixels and torch's default above."""
    default = torch_default()
    if setting is None:
        return default, "torch's default"
    if setting == "auto":
        if input_size < SMALL_INPUT:
            return 1, f"auto: one for {input_size}-pixel inputs"
        return default, "auto: torch's default"
    return int(setting), "threads"


def torch_default() -> int:
    """torch's thread count before any run of this process changed it."""
    import torch

    if not _process_default:
        _process_default.append(torch.get_num_threads())
    return _process_default[0]


def apply(setting: Any, input_size: int) -> dict[str, Any]:
    """Set torch's intra-op threads for a run; what was chosen, for the record (the wait policy is in its environment)."""
    import torch

    threads, why = resolve(setting, input_size)
    torch.set_num_threads(threads)
    return {"threads": threads, "threads_why": why}
