"""``noisybench compare``: a method × seed sweep, one run after another, that can be resumed.

Runs go to ``DIR/<dataset>/<method>/seed<k>/``. A finished run (its metrics.json exists)
is skipped, an interrupted one resumes from its checkpoint, and a run that fails leaves
``failed.json`` (error and traceback) and the sweep goes on. Run it again to retry. Each
run takes its folder's lock: a run another process holds is reported ``busy`` and left to
it, so two sweeps over one folder share the work instead of overwriting each other.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from noisybench import records
from noisybench.lock import RunLocked
from noisybench.plugins import installed_methods

FAILED_FILE = "failed.json"


@dataclass
class Outcome:
    method: str
    seed: int
    folder: Path
    status: str  # finished before | done | resumed | failed | busy
    test_accuracy: float | None = None
    seconds: float | None = None
    error: str | None = None


def overrides_for(method: str, overrides: Iterable[str]) -> list[str]:
    """The overrides that apply to ``method``: all but those of another method's section."""
    others = set(installed_methods()) - {method}
    return [o for o in overrides if o.split("=", 1)[0].split(".", 1)[0] not in others]


def run_folder(output: Path, dataset: str, method: str, seed: int) -> Path:
    return Path(output) / dataset / method / f"seed{seed}"


def check_runs(methods: list[str], dataset: str, seeds: list[int], overrides: Iterable[str] = (),
               config_file: str | Path | None = None, plugins=()) -> dict[tuple[str, int], dict]:
    """Every run's resolved config, keyed by (method, seed): every name and option is checked
    before the first run writes anything."""
    from noisybench.api import make_config

    return {(method, seed): make_config(method, dataset, config_file,
                                        [*overrides_for(method, overrides), f"seed={seed}"], plugins=plugins)
            for method in methods for seed in seeds}


def resume_note(folder: Path) -> str:
    """How a run in ``folder`` will start: anew, resuming, or already finished."""
    if (folder / records.METRICS_FILE).exists():
        return " (finished before)"
    return " (resuming)" if records.latest_checkpoint(folder) is not None else ""


def run_one(method: str, dataset: str, seed: int, output: str | Path, overrides: Iterable[str] = (),
            config_file: str | Path | None = None, plugins=()) -> Outcome:
    """One run of a sweep, resumed if it was started: its outcome (a failure is recorded in
    its folder's failed.json, not raised)."""
    from noisybench.api import run

    folder = run_folder(Path(output), dataset, method, seed)
    finished = (folder / records.METRICS_FILE).exists()
    started = records.latest_checkpoint(folder) is not None
    try:
        result = run(method, dataset, folder, [*overrides_for(method, overrides), f"seed={seed}"],
                     config_file, resume=True, plugins=plugins)
    except RunLocked as exc:
        return Outcome(method, seed, folder, "busy", error=str(exc))
    except Exception as exc:  # one failed run must not end the sweep
        folder.mkdir(parents=True, exist_ok=True)
        records.write_json(folder / FAILED_FILE, {"method": method, "seed": seed, "error": str(exc),
                                                  "traceback": traceback.format_exc()})
        return Outcome(method, seed, folder, "failed", error=f"{type(exc).__name__}: {exc}")
    (folder / FAILED_FILE).unlink(missing_ok=True)
    status = "finished before" if finished else "resumed" if started else "done"
    return Outcome(method, seed, folder, status, result["test"]["accuracy"], result["efficiency"]["total_seconds"])


def sweep(methods: list[str], dataset: str, seeds: list[int], output: str | Path, overrides: Iterable[str] = (),
          config_file: str | Path | None = None, plugins=(), announce: Callable[[str], None] = print) -> list[Outcome]:
    """Run every method × seed in this process, one after another (see the module docstring);
    ``announce`` is told of each run before it starts (i of n, method, seed, folder)."""
    from noisybench.sweepstate import JobRecord

    check_runs(methods, dataset, seeds, overrides, config_file, plugins)
    outcomes = []
    total = len(methods) * len(seeds)
    for method in methods:
        for seed in seeds:
            folder = run_folder(Path(output), dataset, method, seed)
            announce(f"run {len(outcomes) + 1} of {total}: {method}, seed {seed}, in {folder}{resume_note(folder)}")
            outcomes.append(run_one(method, dataset, seed, output, overrides, config_file,
                                    [*plugins, JobRecord("local")]))
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    lines = [f"{'method':<12} {'seed':>4}  {'status':<16} {'test acc':>8} {'seconds':>8}"]
    for o in outcomes:
        acc = f"{o.test_accuracy:.4f}" if o.test_accuracy is not None else "-"
        secs = f"{o.seconds:.1f}" if o.seconds is not None else "-"
        lines.append(f"{o.method:<12} {o.seed:>4}  {o.status:<16} {acc:>8} {secs:>8}" + (f"  {o.error}" if o.error else ""))
    return "\n".join(lines)

