"""Every hostile input of ``tests/hostile.py`` through the command line, each in a process of its own.

Usage: ``python benchmarks/hostile_sweep.py [--only REGEX] [--timeout S] [--memory-mb MB] [--json FILE]``

The parent imports noisybench once and forks a child per case (so a case costs no imports).
The child writes the case's inputs into an empty folder, runs ``noisybench.cli.main`` with
stdout and stderr sent to files (C libraries' messages included), and judges the outcome
(``hostile.judge``): ``clean`` (exit 2, one line naming the culprit), ``handled`` (the
input was read and the result is right), ``traceback``, ``silent`` (a wrong result or
exit 0 where a refusal was due), ``data loss`` (a file that was there before changed or
went), ``unclear`` (refused, but not in one line naming the culprit). The parent adds
what only it can see: ``crash`` (killed by a signal), ``hang`` (past ``--timeout``) and
``memory`` (a MemoryError, or the case's process group grew past ``--memory-mb`` over the
parent's size: it is killed there, so a case cannot take the machine down).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import hostile  # noqa: E402

OUTCOMES = ["clean", "handled", "traceback", "silent", "data loss", "unclear", "hang", "memory", "crash"]


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    members.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return members


def child(item: hostile.Case, tmp: Path, result: Path) -> None:
    """In the forked process: build, run, judge; the verdict goes to ``result``."""
    os.setpgid(0, 0)
    out, err = os.open(tmp.parent / "stdout", os.O_WRONLY | os.O_CREAT, 0o644), os.open(
        tmp.parent / "stderr", os.O_WRONLY | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.chdir(tmp)
    undo = item.setup(tmp) if item.setup else None
    argv = item.build(tmp)
    os.chdir(tmp)
    before = hostile.snapshot(tmp)
    from noisybench.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what the interpreter would print
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if undo:
        undo()
    text_out = (tmp.parent / "stdout").read_text(errors="replace")
    text_err = (tmp.parent / "stderr").read_text(errors="replace")
    outcome, detail = hostile.judge(item, tmp, code, text_out, text_err, before)
    if "MemoryError" in text_err or "can't allocate memory" in text_err or "bad_alloc" in text_err:
        outcome, detail = "memory", text_err.strip().splitlines()[-1][:200]
    result.write_text(json.dumps({"outcome": outcome, "detail": detail, "code": code}))


def run_case(item: hostile.Case, folder: Path, timeout: float, memory: int, base: int) -> dict:
    tmp = folder / "in"
    tmp.mkdir(parents=True)
    result = folder / "result.json"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            child(item, tmp, result)
        except BaseException:  # noqa: BLE001 - a builder that failed: say so
            (folder / "builder_error").write_text(traceback.format_exc())
        finally:
            os._exit(0)
    peak, killed = 0, None
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        members = group_members(pid) or [pid]
        size = max(rss_bytes(m) for m in members)
        peak = max(peak, size)
        if size - base > memory:
            killed = "memory"
        elif time.perf_counter() - start > timeout:
            killed = "hang"
        if killed:
            for member in members:
                try:
                    os.kill(member, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.05)
    for member in group_members(pid):  # loader workers or a pool left behind
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass
    seconds = time.perf_counter() - start
    growth = max(peak, usage.ru_maxrss * 1024) - base
    verdict = {"case": item.name, "command": item.command, "seconds": round(seconds, 2),
               "growth_mb": round(growth / 2**20)}
    if killed:
        verdict.update(outcome=killed, detail=f"killed after {seconds:.0f} s, {growth / 2**20:.0f} MB over the parent")
    elif os.WIFSIGNALED(status):
        err = (folder / "stderr").read_text(errors="replace").strip().splitlines()
        verdict.update(outcome="crash", detail=f"signal {os.WTERMSIG(status)}: {err[-1][:150] if err else ''}")
    elif (folder / "builder_error").exists():
        verdict.update(outcome="builder", detail=(folder / "builder_error").read_text().strip().splitlines()[-1])
    elif result.exists():
        verdict.update(json.loads(result.read_text()))
        if verdict["outcome"] not in ("memory",) and growth > memory:
            verdict.update(outcome="memory", detail=f"{growth / 2**20:.0f} MB over the parent")
    else:
        verdict.update(outcome="crash", detail=f"exit status {os.WEXITSTATUS(status)} without a verdict")
    return verdict


def build_templates(root: Path) -> None:
    """A finished digits run and a prepared csv dataset, built in a child (the parent keeps
    torch's thread pools unstarted, so forking stays safe)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            hostile.make_templates(root)
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status:
        raise SystemExit("building the templates failed")
    hostile.TEMPLATES.update(run=root / "run", prepared=root / "prepared")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="cases whose name matches this regex")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--memory-mb", type=int, default=1536)
    parser.add_argument("--json", help="write every verdict to this file")
    parser.add_argument("--keep", action="store_true", help="keep the cases' folders")
    args = parser.parse_args()
    import noisybench.api  # noqa: F401 - imported once, before the forks
    import noisybench.cli  # noqa: F401
    import noisybench.evaluate  # noqa: F401
    import noisybench.leaderboard  # noqa: F401
    import noisybench.predict  # noqa: F401
    import noisybench.prepare  # noqa: F401
    import torchvision.transforms.v2  # noqa: F401

    root = Path(tempfile.mkdtemp(prefix="hostile_sweep_"))
    build_templates(root / "templates")
    cases = [c for c in hostile.CASES if not args.only or re.search(args.only, c.name)]
    base = rss_bytes(os.getpid())
    verdicts = []
    print(f"{len(cases)} cases; parent {base / 2**20:.0f} MB; limits {args.timeout:.0f} s, "
          f"{args.memory_mb} MB; {root}", flush=True)
    for number, item in enumerate(cases):
        verdict = run_case(item, root / "cases" / f"{number:03d}", args.timeout, args.memory_mb * 2**20, base)
        verdicts.append(verdict)
        print(f"{verdict['outcome']:<9} {verdict['seconds']:6.1f}s {item.command:<12} {item.name}: "
              f"{verdict.get('detail', '')}", flush=True)
        if not args.keep:
            shutil.rmtree(root / "cases" / f"{number:03d}", ignore_errors=True)
    counts = collections.Counter(v["outcome"] for v in verdicts)
    print("\n" + ", ".join(f"{k} {counts.get(k, 0)}" for k in OUTCOMES + ["builder"] if counts.get(k) or k in OUTCOMES)
          + f"; {len(verdicts)} cases")
    by_command = collections.defaultdict(collections.Counter)
    for v in verdicts:
        by_command[v["command"]][v["outcome"]] += 1
    for command, found in sorted(by_command.items()):
        print(f"  {command:<14} " + ", ".join(f"{k} {n}" for k, n in found.most_common()))
    if args.json:
        Path(args.json).write_text(json.dumps(verdicts, indent=1))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    resource.getrusage(resource.RUSAGE_CHILDREN)


if __name__ == "__main__":
    main()
