"""One run per folder: a lock file holding the owner's pid and host.

Two runs writing one folder would replace each other's checkpoint and record, so the
second is refused (``RunLocked``, exit status 2) naming the holder. A lock whose process
is gone (same host, no such pid) is stale and taken over: a killed run can be resumed at
once. Under several processes only the main one (``RANK`` 0) takes the lock.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from noisybench.errors import NoisybenchError

LOCK_FILE = "run.lock"


class RunLocked(NoisybenchError):
    """The run folder is held by another live process."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(path: Path) -> tuple[int | None, str]:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


class RunLock:
    """``with RunLock(folder):`` holds ``folder/run.lock`` for the block (main process only)."""

    def __init__(self, folder: str | Path, main: bool | None = None):
        self.path = Path(folder) / LOCK_FILE
        self.main = int(os.environ.get("RANK", "0")) == 0 if main is None else main
        self.mine = f"{os.getpid()} {socket.gethostname()}"
        self.held = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            handle.write(self.mine + "\n")
        return True

    def acquire(self) -> None:
        if not self.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self.held = True
                return
            pid, host = _holder(self.path)
            if pid is None or host != socket.gethostname() or _alive(pid):
                break
            stale = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
            try:  # a rename is atomic: of two processes taking over one stale lock, one wins
                os.rename(self.path, stale)
                stale.unlink()
            except FileNotFoundError:
                pass
        pid, host = _holder(self.path)
        holder = f"process {pid} on {host}" if pid is not None else "another process"
        raise RunLocked(f"{self.path.parent} is in use by {holder} (lock file {self.path}); wait for that run to "
                        "end, or delete the lock file if no such process exists")

    def release(self) -> None:
        if self.held and _holder(self.path) == (os.getpid(), socket.gethostname()):
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
