"""Reading files that may come from anyone: regular files only, within a size bound, never forever.

A FIFO named ``config.yaml`` blocks a plain ``open().read()`` forever, a link to
``/dev/zero`` reads until memory runs out, and a 12 GiB sparse file is read whole. So a
file is opened without blocking (``O_NONBLOCK``: opening a FIFO returns at once), checked
with ``fstat`` on the open descriptor (what is checked is what is read: no race with a
rename) and read only if it is a regular file no larger than the bound. A symlink loop
fails in ``open`` (ELOOP), naming the path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from noisybench.errors import NoisybenchError

MIB = 2**20


class NotRegular(NoisybenchError):
    """A path that is not a regular file (FIFO, device, socket, folder) or is over its size bound."""


def kind(mode: int) -> str:
    """A file type in words, for messages."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of regular file ``path`` if it holds at most ``limit`` bytes; else NotRegular
    naming it (OSError for a missing file, a symlink loop, no permission)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(f"{path}: {kind(info.st_mode)}, not a regular {what}")
        if info.st_size > limit:
            raise NotRegular(f"{path}: {info.st_size / MIB:.1f} MiB, more than the {limit / MIB:g} MiB a {what} "
                             "may hold")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while read
        raise NotRegular(f"{path}: more than the {limit / MIB:g} MiB a {what} may hold")
    return data


def open_regular(path: str | Path):
    """A binary file object of regular file ``path`` (its header may then be read); NotRegular
    for a FIFO, device or folder, OSError for a missing file or a symlink loop."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise NotRegular(f"{path}: {kind(info.st_mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def read_text(path: str | Path, limit: int, what: str = "file") -> str:
    """``read_bytes`` decoded as UTF-8 (a leading byte-order mark dropped); NotRegular if not UTF-8."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NotRegular(f"{path}: not UTF-8 text (line {line}; a {what} is UTF-8)") from None


def is_regular(path: str | Path) -> bool:
    """Whether ``path`` (links followed) is a regular file; False for anything that cannot be stat'ed."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
