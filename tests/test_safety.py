"""What makes noisybench safe to point at anything: the run lock is one holder's at a time, a
stop after the record changes nothing, device nodes are never replaced, hostile data stays
within a memory bound, and folders it did not write are never removed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import hostile
from conftest import run_digits
from noisybench.cli import main

RACER = """
import os, sys, time
from pathlib import Path
from noisybench.lock import RunLock, RunLocked
folder, slots, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = overlaps = 0
for slot in range(slots):
    time.sleep(max(0.0, start + 0.12 * slot - time.time()))
    lock = RunLock(folder)
    try:
        lock.acquire()
    except RunLocked:
        continue
    held += 1
    mine = folder / f"holder-{os.getpid()}"
    overlaps += any(folder.glob("holder-*"))  # another process holds it too
    mine.write_text("")
    time.sleep(0.05)
    mine.unlink()
    if slot % 3 == 0:  # now and then a holder dies without releasing: its lock file stays behind
        lock.lock.release(force=True)
    else:
        lock.release()
print(held, overlaps)
"""


def test_three_processes_taking_one_lock_at_once_never_both_hold_it(tmp_path):
    import time

    slots, start = 25, time.time() + 3.0
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(slots), str(start)],
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    results = [tuple(map(int, r.communicate(timeout=120)[0].split())) for r in racers]
    assert sum(overlaps for _, overlaps in results) == 0, results
    assert sum(held for held, _ in results) >= slots // 2 and sum(held > 0 for held, _ in results) >= 2, results


def test_a_stop_after_the_record_is_written_exits_0(tmp_path, capsys, monkeypatch):
    import signal

    import noisybench.engine

    original = noisybench.engine.Trainer.release_loaders

    def stopped_after_the_record(self):  # SIGTERM arrives while the run tidies up, its record written
        if (self.output / "metrics.json").exists():
            os.kill(os.getpid(), signal.SIGTERM)
        original(self)

    monkeypatch.setattr(noisybench.engine.Trainer, "release_loaders", stopped_after_the_record)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["run", "--method", "ce", "--dataset", "digits", "--output", str(tmp_path / "run"),
                     "progress=false", "epochs=1"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("done: test accuracy")
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_device_nodes_given_as_outputs_are_refused_and_kept(tmp_path, capsys):
    if not hostile.can_mknod(tmp_path):
        pytest.skip("mknod is not permitted here")
    run = tmp_path / "run"
    run_digits(run, "epochs=1")
    node = tmp_path / "null"  # a /dev/null of our own (1, 3): the real one is never touched
    hostile.device(node)
    commands = [["predict", str(run), "--input", str(hostile.run_images(tmp_path)), "--output", str(node)],
                ["leaderboard", str(tmp_path), "--output", str(node)], ["export", str(run), "--output", str(node)],
                ["evaluate", str(run), "--features", str(node)], ["leaderboard", str(tmp_path), "--plots", str(node)]]
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(node) in err and "Traceback" not in err, err
        info = os.lstat(node)
        assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(1, 3), argv  # still the device it was


MEMORY = """
import os, resource, sys
sys.path.insert(0, {tests!r})
import hostile
from noisybench.cli import main
codes = []
for name in {names!r}:
    case = next(c for c in hostile.CASES if c.name == name)
    folder = os.path.join({root!r}, str(len(codes)))
    os.makedirs(folder)
    from pathlib import Path
    codes.append(main(case.build(Path(folder))))
print("codes", *codes)
"""


def test_hostile_data_stays_within_a_memory_bound(tmp_path):
    """A run given a label id of 9999999999, and one given a 12 GiB sparse image: the process's
    peak resident memory stays under 1.5 GB (ru_maxrss of the child, whose address space is
    also capped at 8 GB so that a failure cannot take the machine down)."""
    import resource

    names = ["label id 9999999999", "12 GiB sparse png (run)"]
    script = MEMORY.format(tests=str(Path(__file__).parent), names=names, root=str(tmp_path))

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))

    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), preexec_fn=cap)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, err[-3000:]
    assert out.splitlines()[-1] == "codes 2 0", (out, err[-3000:])  # refused; trained, the image counted unreadable
    assert usage.ru_maxrss * 1024 < 1.5 * 2**30, f"peak {usage.ru_maxrss / 2**20:.2f} GiB"


def test_folders_noisybench_did_not_write_are_never_removed(tmp_path):
    from noisybench import records
    from noisybench.errors import NoisybenchError

    src, dst = tmp_path / "best.tmp", tmp_path / "best"
    for folder in (src, dst):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
    (dst / "notes.txt").write_text("the user's")  # not noisybench's: refused, nothing moved
    with pytest.raises(NoisybenchError, match="best: not a folder noisybench wrote"):
        records.replace_dir(src, dst)
    assert (dst / "notes.txt").read_text() == "the user's" and (src / "model.safetensors").exists()
    (dst / "notes.txt").unlink()
    records.replace_dir(src, dst)  # its own: replaced
    assert not src.exists() and (dst / "model.safetensors").exists() and not (tmp_path / "best.old").exists()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NoisybenchError, match="or is a link"):
        records.remove_own_dir(tmp_path / "link")
    assert (tmp_path / "elsewhere").is_dir()
