"""One run per folder: an OS lock on ``run.lock`` (filelock), holding the owner's pid and host.

Two runs writing one folder would replace each other's checkpoint and record, so the
second is refused (``RunLocked``, exit status 2) naming the holder. The lock is the
operating system's (``flock``): it dies with its process, so a killed run's folder is free
at once, and of several processes taking it at the same moment exactly one gets it (a
stale lock file is no longer "taken over", which could race). The file is removed when
the run ends. Under several processes only the main one (``RANK`` 0) takes the lock.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from filelock import FileLock, Timeout

from noisybench.errors import NoisybenchError

LOCK_FILE = "run.lock"


class RunLocked(NoisybenchError):
    """The run folder is held by another live process."""


def _holder(path: Path) -> tuple[int | None, str]:
    """(pid, host) the holder wrote into the lock file, or (None, "") if unreadable."""
    try:
        pid, _, host = path.read_text()[:256].strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


class RunLock:
    """``with RunLock(folder):`` holds ``folder/run.lock`` for the block (main process only)."""

    def __init__(self, folder: str | Path, main: bool | None = None):
        self.path = Path(folder) / LOCK_FILE
        self.main = int(os.environ.get("RANK", "0")) == 0 if main is None else main
        self.mine = f"{os.getpid()} {socket.gethostname()}\n"
        self.lock = FileLock(str(self.path), timeout=0)
        self.inode: tuple[int, int] | None = None

    def _sign(self) -> None:
        """Write this process's pid and host into the lock file it holds (for a refused run's message)."""
        fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.ftruncate(fd, 0)
            os.write(fd, self.mine.encode())
            info = os.fstat(fd)
            self.inode = (info.st_dev, info.st_ino)
        finally:
            os.close(fd)

    def acquire(self) -> None:
        if not self.main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise RunLocked(f"{self.path} is not a lock file noisybench writes (not a regular file); remove it")
        try:
            self.lock.acquire()
        except Timeout:
            pid, host = _holder(self.path)
            holder = f"process {pid} on {host}" if pid is not None else "another process"
            raise RunLocked(f"{self.path.parent} is in use by {holder} (lock file {self.path}); wait for that run "
                            "to end") from None
        try:
            self._sign()
        except OSError:
            self.lock.release(force=True)
            raise

    def release(self) -> None:
        """Remove the lock file while still holding it (only if it is still the file this process
        locked; one who opened it meanwhile finds it unlinked and tries again), then unlock."""
        if not self.lock.is_locked:
            return
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self.inode:
                self.path.unlink()
        except OSError:
            pass
        self.lock.release(force=True)

    @property
    def held(self) -> bool:
        return self.lock.is_locked

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
