"""Hostile inputs to every command, in-process (tests/hostile.py holds them; the sweep in
benchmarks/hostile_sweep.py runs more, each in a process of its own): each case ends in exit
status 2 and one line naming the culprit, or is read and handled right; never a traceback;
every file that was there before is byte-identical after; each answers within seconds."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest

import hostile
from noisybench.cli import main

TESTED = [c for c in hostile.CASES if c.in_test]
SECONDS = 60  # a case answers in seconds; this bound catches a hang (a FIFO read, an endless loop)


class TookTooLong(BaseException):
    pass


@contextmanager
def time_limit(seconds: int):
    def expire(signum, frame):
        raise TookTooLong(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def templates(tmp_path_factory):
    """A finished digits run and a prepared dataset the cases copy."""
    return hostile.make_templates(tmp_path_factory.mktemp("hostile_templates"))


def test_there_are_sixty_new_cases_across_every_command():
    assert len(TESTED) >= 60
    assert {c.command for c in TESTED} >= {"run", "config", "compare", "leaderboard", "evaluate", "export", "predict",
                                            "data check", "data prepare", "data bench"}


@pytest.mark.parametrize("name", [c.name for c in TESTED])
def test_hostile_input(name, tmp_path, templates, capsys, monkeypatch):
    item = next(c for c in TESTED if c.name == name)
    if "device" in name and not hostile.can_mknod(tmp_path):
        pytest.skip("mknod is not permitted here")
    monkeypatch.chdir(tmp_path)
    undo = item.setup(tmp_path) if item.setup else None
    try:
        argv = item.build(tmp_path)
        before = hostile.snapshot(tmp_path)
        capsys.readouterr()
        with time_limit(SECONDS):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        out, err = capsys.readouterr()
    finally:
        if undo:
            undo()
    outcome, detail = hostile.judge(item, tmp_path, code, out, err, before)
    assert outcome in ("clean", "handled"), f"{outcome}: {detail}\n{err[-3000:]}"
