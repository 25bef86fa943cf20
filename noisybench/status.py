"""``noisybench status SWEEP_DIR``: where each run of a sweep stands, read from its folders alone.

A run is ``recorded`` (metrics.json), ``running`` (its lock is held by the process its
job.json names: the epoch under way from its checkpoint), ``held`` (its lock is held by a
process of no job of the sweep: a hand-started run, another sweep), ``failed`` (failed.json:
its one-line error), or ``pending`` (not started, queued, or stopped: the epochs saved).
The runs are those ``sweep.json`` lists and every ``DATASET/METHOD/seedK`` folder found. No
torch is imported: it answers in a fraction of a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noisybench import records
from noisybench.compare import FAILED_FILE
from noisybench.errors import NoisybenchError
from noisybench.lock import LOCK_FILE, RunLock, RunLocked
from noisybench.sweepstate import JOB_FILE, read_json, read_manifest

RUN_KEY = re.compile(r"[^/\\]+/[^/\\]+/seed\d+")
STATES = ("recorded", "running", "held", "failed", "pending")


@dataclass
class RunState:
    run: str  # DATASET/METHOD/seedK
    state: str
    job_id: str | None
    detail: str


def printable(text: Any, limit: int = 200) -> str:
    """One line of ``text`` with control characters shown as '?' (a folder may come from anyone)."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return "".join(ch if ch.isprintable() else "?" for ch in line)[:limit]


def holder(folder: Path) -> tuple[int | None, str]:
    """The (pid, host) a run's lock file names (its documented content), or (None, "")."""
    from noisybench.inputs import NotRegular, read_bytes

    try:  # a regular file only: a FIFO named run.lock would be read forever
        pid, _, host = read_bytes(folder / LOCK_FILE, 256, "lock file").decode().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError, NotRegular):
        return None, ""


def lock_holder(folder: Path) -> str | None:
    """Who holds a run's lock ("process PID on HOST"), or None if it is free. The only sure
    test of a lock is to take it: it is taken and given back at once, and only where a lock
    file exists (a free folder is left as it is)."""
    if not (folder / LOCK_FILE).exists():
        return None
    lock = RunLock(folder, main=True)
    try:
        lock.acquire()
    except RunLocked:
        pid, host = holder(folder)
        return f"process {pid} on {printable(host, 64)}" if pid is not None else "another process"
    except OSError:
        return "another process (its lock could not be checked)"
    lock.release()
    return None


def epochs_planned(folder: Path, entry: dict[str, Any]) -> int | None:
    if isinstance(entry.get("epochs"), int):
        return entry["epochs"]
    try:
        from noisybench.config import load_yaml

        return int(load_yaml(folder / records.CONFIG_FILE)["epochs"])
    except Exception:  # noqa: BLE001 - no config yet, or not one noisybench wrote
        return None


def progress(folder: Path, entry: dict[str, Any]) -> tuple[int, str]:
    """(epochs saved, the epoch under way as "epoch k of N")."""
    saved = records.latest_checkpoint(folder)
    done = records.saved_epochs(saved) if saved is not None else 0
    planned = epochs_planned(folder, entry)
    if planned is not None and done >= planned:
        return done, f"fine-tuning epoch {done - planned + 1}"
    return done, f"epoch {done + 1}" + (f" of {planned}" if planned is not None else "")


def run_state(sweep_dir: Path, key: str, entry: dict[str, Any]) -> RunState:
    folder = sweep_dir / key
    job = read_json(folder / JOB_FILE) or {}
    job_id = entry.get("job_id") or job.get("job_id")
    held_by = lock_holder(folder) if folder.is_dir() else None
    if held_by is not None:
        if holder(folder) == (job.get("pid"), job.get("host")):
            done, under_way = progress(folder, entry)
            where = printable(job["host"], 64)
            return RunState(key, "running", job.get("job_id"), f"{under_way} ({done} saved) on {where}")
        return RunState(key, "held", job_id, f"by {held_by}, not by a job of this sweep")
    record = records.read_record(folder / records.METRICS_FILE)
    if record is not None:
        accuracy = (record.get("test") or {}).get("accuracy")
        return RunState(key, "recorded", job_id, f"test acc {accuracy:.4f}" if isinstance(accuracy, float) else "")
    failed = read_json(folder / FAILED_FILE)
    if failed is not None:
        return RunState(key, "failed", job_id, printable(failed.get("error", "see failed.json")))
    done, _ = progress(folder, entry)
    started = f", started {job['starts']} time(s)" if isinstance(job.get("starts"), int) else ""
    return RunState(key, "pending", job_id, f"{done} epoch(s) saved{started}" if done else "not started")


def sweep_runs(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The runs of ``sweep.json`` and every DATASET/METHOD/seedK folder, keyed by that path."""
    runs = {k: v for k, v in read_manifest(sweep_dir).items() if RUN_KEY.fullmatch(k) and ".." not in k.split("/")}
    for folder in sweep_dir.glob("*/*/seed*"):
        key = folder.relative_to(sweep_dir).as_posix()
        if RUN_KEY.fullmatch(key) and folder.is_dir() and not folder.is_symlink():
            runs.setdefault(key, {})
    return dict(sorted(runs.items()))


def status(sweep_dir: str | Path) -> list[RunState]:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise NoisybenchError(f"{sweep_dir}: not a folder")
    runs = sweep_runs(sweep_dir)
    if not runs:
        raise NoisybenchError(f"{sweep_dir}: no runs (no sweep.json and no DATASET/METHOD/seedK folders); "
                              "give the folder compare --output wrote to")
    return [run_state(sweep_dir, key, entry) for key, entry in runs.items()]


def report(states: list[RunState]) -> str:
    width = max(len("run"), *(len(s.run) for s in states))
    lines = [f"{'run':<{width}}  {'state':<8}  {'job':<12}  detail"]
    lines += [f"{printable(s.run):<{width}}  {s.state:<8}  {printable(s.job_id or '-', 12):<12}  {s.detail}"
              for s in states]
    found = [(name, sum(s.state == name for s in states)) for name in STATES]
    counts = [f"{count} {name}" for name, count in found if count]
    lines.append(f"{len(states)} run{'s' if len(states) != 1 else ''}: {', '.join(counts)}")
    return "\n".join(lines)
