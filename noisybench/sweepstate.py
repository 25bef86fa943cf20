"""What a sweep folder says of its runs besides their records, for ``noisybench status``.

``DIR/sweep.json`` (written by ``compare`` before it starts or submits anything): every run
of the sweep, keyed by its folder relative to ``DIR``, with its method, seed, epochs, launcher
and, once submitted, job id and log file: so a run whose job has not started yet is known.
``RUN_DIR/job.json`` (written by the process that trains the run, when training starts, so
while it holds the run's lock): launcher, job id, host, pid, start time, how many times the
run was started in that job (a requeued job starts it again) and the job's log. Reading
both needs no torch.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from noisybench import hookimpl, records

SWEEP_FILE = "sweep.json"
JOB_FILE = "job.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object noisybench wrote, or None if absent or unreadable (being replaced, damaged)."""
    from noisybench.inputs import NotRegular, read_bytes

    try:  # a regular file only: a FIFO or /dev/zero here would be read forever
        value = json.loads(read_bytes(path, 10_000_000, "JSON file"))
    except (OSError, ValueError, RecursionError, NotRegular):
        return None
    return value if isinstance(value, dict) else None


def read_manifest(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The runs ``sweep.json`` lists, keyed by folder relative to the sweep folder."""
    runs = (read_json(Path(sweep_dir) / SWEEP_FILE) or {}).get("runs")
    return {str(k): v for k, v in runs.items() if isinstance(v, dict)} if isinstance(runs, dict) else {}


def update_manifest(sweep_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Add or update runs in ``sweep.json`` (the runs of earlier sweeps into the folder stay)."""
    runs = read_manifest(sweep_dir)
    for key, entry in entries.items():
        runs[key] = {**runs.get(key, {}), **entry}
    records.write_json(Path(sweep_dir) / SWEEP_FILE, {"runs": dict(sorted(runs.items()))})


class JobRecord:
    """Writes ``job.json`` when the run starts training (its lock is held then; a run that
    another process holds, or that is already recorded, never gets here)."""

    def __init__(self, launcher: str, job_id: str | None = None, log: str | None = None):
        self.launcher, self.job_id, self.log = launcher, job_id, log

    @hookimpl
    def noisybench_setup(self, run: Any) -> None:
        if not run.accelerator.is_main_process or run.output is None:
            return
        path = Path(run.output) / JOB_FILE
        previous = read_json(path) or {}
        starts = previous.get("starts", 0) + 1 if previous.get("job_id") == self.job_id else 1
        records.write_json(path, {"launcher": self.launcher, "job_id": self.job_id, "host": socket.gethostname(),
                                  "pid": os.getpid(), "started": now(), "starts": starts, "log": self.log})
