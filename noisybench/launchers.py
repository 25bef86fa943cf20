"""Where ``compare`` runs a sweep's runs: here one after another, here several at once, or on Slurm.

- ``--launcher local --jobs 1`` (the default): in this process, one run after another
  (``compare.sweep``).
- ``--launcher local --jobs N``: N runs at once, each a submitit local job (a process of its
  own, logs under ``DIR/logs/``). Each run gets ``--gpus-per-run`` GPUs (default one where
  the machine has any), the GPUs dealt out to the N slots in turn (with more slots than GPUs,
  runs share them), and torch's CPU threads are shared out: the jobs get
  ``OMP_NUM_THREADS`` = cores // N unless it is set (a config's ``threads`` wins over both).
- ``--launcher slurm``: one Slurm job per run, submitted as one job array through submitit
  (``--jobs`` caps how many run at once), with ``--gpus-per-run`` tasks on one node (one
  process per GPU; Accelerate joins them) and the resources asked for. ``compare`` returns
  once the jobs are submitted (``--wait``: once they end). A job warned of preemption or of
  its time limit stops at the next epoch boundary and requeues itself (``preemption.py``).

Runs already recorded are not started again, and a run another process holds is left to it;
the run-folder lock keeps two jobs out of one folder all the same. ``DIR/sweep.json`` lists
every run with its job id for ``noisybench status``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from noisybench import records
from noisybench.compare import FAILED_FILE, Outcome, check_runs, run_folder, sweep
from noisybench.errors import NoisybenchError
from noisybench.sweepstate import now, update_manifest

LOG_DIR = "logs"
SIGNAL_DELAY_S = 120  # Slurm warns a job this long before its time limit (submitit's USR2)
STOP_MARGIN_S = 30  # of that warning, kept for submitit to checkpoint and requeue
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # local jobs have no time limit
POLL_S = 0.5  # local jobs: a process poll
SLURM_POLL_S = 30  # Slurm jobs: submitit asks sacct, which a cluster would not have asked every second
SLURM_ONLY = {"partition": "--partition", "account": "--account", "time_min": "--time",
              "cpus_per_run": "--cpus-per-run", "slurm": "--slurm"}


@dataclass
class Resources:
    """How a sweep runs: launcher, runs at once, and what each run's job gets."""

    launcher: str = "local"
    jobs: int | None = None  # runs at once (local: default 1; slurm: default all, as the cluster allows)
    gpus_per_run: int | None = None
    cpus_per_run: int | None = None
    partition: str | None = None
    account: str | None = None
    time_min: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    wait: bool = False


def whole_number(flag: str, text: str | None, minimum: int) -> int | None:
    if text is None:
        return None
    if not re.fullmatch(r"\s*\d+\s*", str(text)) or int(text) < minimum:
        raise NoisybenchError(f"{flag} {text}: expected a whole number, {minimum} or more")
    return int(text)


def minutes(text: str | None) -> int | None:
    """sbatch's --time formats (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes."""
    if text is None:
        return None
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise NoisybenchError(f"--time {text}: expected minutes or [days-]hours:minutes:seconds, as sbatch takes")
    days, a, b, c = (int(g) if g else None for g in match.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:
        seconds = a * 60
    if seconds <= 0:
        raise NoisybenchError(f"--time {text}: a run needs some time")
    return -(-seconds // 60)


def slurm_extras(pairs: Iterable[str]) -> dict[str, Any]:
    """``--slurm key=value`` pairs: submitit's Slurm parameters, values read as YAML."""
    from submitit import SlurmExecutor

    from noisybench.config import read_yaml

    known = SlurmExecutor._valid_parameters()
    extras: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise NoisybenchError(f"--slurm {pair}: expected key=value, e.g. --slurm mem=64G")
        if key not in known:
            raise NoisybenchError(f"--slurm {key}: not a Slurm parameter of submitit; known: "
                                  f"{', '.join(sorted(known))}")
        try:
            extras[key] = read_yaml(value) if value.strip() else None
        except Exception:  # noqa: BLE001 - a YAML error of any kind: one line
            raise NoisybenchError(f"--slurm {pair}: cannot read the value") from None
    return extras


def parse_resources(launcher: str = "local", jobs: str | None = None, gpus_per_run: str | None = None,
                    cpus_per_run: str | None = None, partition: str | None = None, account: str | None = None,
                    time: str | None = None, slurm: Iterable[str] = (), wait: bool = False) -> Resources:
    """The command line's resource flags, checked: a bad one is a one-line error."""
    if launcher not in ("local", "slurm"):
        raise NoisybenchError(f"--launcher {launcher}: expected local or slurm")
    found = Resources(launcher, whole_number("--jobs", jobs, 1), whole_number("--gpus-per-run", gpus_per_run, 0),
                      whole_number("--cpus-per-run", cpus_per_run, 1), partition, account, minutes(time),
                      slurm_extras(slurm or ()), wait)
    if launcher == "local":
        given = [flag for name, flag in SLURM_ONLY.items() if getattr(found, name) not in (None, {})]
        if given:
            raise NoisybenchError(f"{', '.join(given)}: only for --launcher slurm")
        found.jobs = found.jobs or 1
    elif found.time_min is None and "time" not in found.slurm:
        raise NoisybenchError("--launcher slurm needs --time, each run's time limit (e.g. --time 24:00:00); "
                              "a run that needs longer is requeued and resumes")
    return found


def slurm_parameters(resources: Resources, job_name: str) -> dict[str, Any]:
    """What submitit's SlurmExecutor gets: one task per GPU of a run, on one node."""
    gpus = 1 if resources.gpus_per_run is None else resources.gpus_per_run
    tasks = max(1, gpus)
    params: dict[str, Any] = {"job_name": job_name, "time": resources.time_min, "ntasks_per_node": tasks,
                              "nodes": 1, "signal_delay_s": SIGNAL_DELAY_S, "stderr_to_stdout": False}
    if gpus:
        params["gpus_per_node"] = gpus
    if resources.cpus_per_run:
        params["cpus_per_task"] = max(1, resources.cpus_per_run // tasks)
    for key in ("partition", "account"):
        if getattr(resources, key):
            params[key] = getattr(resources, key)
    if resources.jobs:
        params["array_parallelism"] = resources.jobs
    params.update(resources.slurm)  # --slurm wins over the flags
    return {k: v for k, v in params.items() if v is not None}


def slurm_executor(folder: Path, resources: Resources, job_name: str) -> Any:
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder, max_num_timeout=20)
    except RuntimeError as exc:  # no srun here
        raise NoisybenchError(f"--launcher slurm: {exc}; run compare on a Slurm login node") from None
    try:
        executor.update_parameters(**slurm_parameters(resources, job_name))
    except (ValueError, TypeError) as exc:
        raise NoisybenchError(f"--slurm: {str(exc).splitlines()[0]}") from None
    return executor


@dataclass
class Slots:
    """Runs at once on this machine: each slot's GPUs (none without GPUs) and the jobs' environment."""

    count: int
    gpus: list[list[int]]
    environment: dict[str, str]


def local_devices(resources: Resources) -> Slots:
    """Each slot's GPUs and, unless OMP_NUM_THREADS is set, its share of the cores as torch's threads."""
    import torch

    count = torch.cuda.device_count()
    per_run = (1 if count else 0) if resources.gpus_per_run is None else resources.gpus_per_run
    if per_run > count:
        raise NoisybenchError(f"--gpus-per-run {per_run}: this machine has {count} GPU{'s' if count != 1 else ''}")
    slots = resources.jobs or 1
    gpus = [[(slot * per_run + i) % count for i in range(per_run)] for slot in range(slots)] if per_run else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": str(max(1, cores // slots))}
    return Slots(slots, gpus, share)


def grace_seconds(resources: Resources) -> float:
    return max(0.0, float(resources.slurm.get("signal_delay_s", SIGNAL_DELAY_S)) - STOP_MARGIN_S)


def one_line(exc: BaseException) -> str:
    """The exception line of a job's traceback (submitit puts the whole trace in its message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b", line)]
    return (raised or lines or [type(exc).__name__])[-1 if raised else 0]


def job_outcome(job: Any, run: Any) -> Outcome:
    """A finished job's outcome; a job that ended without one (killed, not requeued) is a
    failure, written to the run's failed.json unless the run wrote its own."""
    try:
        return job.results()[0]  # the main task's (a run of several GPUs is a job of several tasks)
    except Exception as exc:  # noqa: BLE001 - submitit's UncompletedJobError, FailedJobError
        line = f"job {job.job_id} ended without a result: {one_line(exc)} (log {job.paths.stderr})"
        folder = run.folder
        if not (folder / records.METRICS_FILE).exists() and not (folder / FAILED_FILE).exists():
            records.write_json(folder / FAILED_FILE, {"method": run.method, "seed": run.seed, "error": line,
                                                      "traceback": str(exc)})
        return Outcome(run.method, run.seed, folder, "failed", error=line)


def recorded_outcome(folder: Path, method: str, seed: int, config: dict[str, Any]) -> Outcome | None:
    """The outcome of a run recorded with this many epochs (not started again), else None."""
    record = records.read_record(folder / records.METRICS_FILE)
    if record is None or (record.get("config") or {}).get("epochs") != config["epochs"]:
        return None
    return Outcome(method, seed, folder, "finished before", record["test"]["accuracy"],
                   record["efficiency"]["total_seconds"])


def held_outcome(folder: Path, method: str, seed: int) -> Outcome | None:
    from noisybench.status import lock_holder

    holder = lock_holder(folder)
    return None if holder is None else Outcome(method, seed, folder, "busy", error=f"{folder} is in use by {holder}")


def launch(methods: list[str], dataset: str, seeds: list[int], output: str | Path, resources: Resources,
           overrides: Iterable[str] = (), config_file: str | Path | None = None, plugins: Iterable[Any] = (),
           announce: Callable[[str], None] = print) -> list[Outcome] | None:
    """Run or submit every method × seed; the outcomes, or None where jobs were submitted and not waited for."""
    output, overrides, plugins = Path(output), list(overrides), tuple(plugins)
    configs = check_runs(methods, dataset, seeds, overrides, config_file, plugins)
    slurm = None
    if resources.launcher == "slurm":  # before anything is written: no srun, a bad --slurm value fail here
        slurm = slurm_executor(output / LOG_DIR, resources, f"noisybench-{dataset}")
    update_manifest(output, {f"{dataset}/{m}/seed{s}": {"method": m, "seed": s, "dataset": dataset,
                                                         "epochs": c["epochs"], "launcher": resources.launcher}
                             for (m, s), c in configs.items()})
    if resources.launcher == "local" and (resources.jobs or 1) == 1:
        return sweep(methods, dataset, seeds, output, overrides, config_file, plugins, announce)
    return launch_jobs(configs, dataset, output, resources, overrides, config_file, plugins, announce, slurm)


def launch_jobs(configs: dict[tuple[str, int], dict], dataset: str, output: Path, resources: Resources,
                overrides: list[str], config_file: Any, plugins: tuple, announce: Callable[[str], None],
                slurm: Any = None) -> list[Outcome] | None:
    """Run (locally) or submit (``slurm``: its executor) each run not recorded and not held as a job."""
    from noisybench.jobs import RunJob

    done: dict[tuple[str, int], Outcome] = {}
    todo = []
    slots = local_devices(resources) if resources.launcher == "local" else None
    for (method, seed), config in configs.items():
        folder = run_folder(output, dataset, method, seed)
        skipped = recorded_outcome(folder, method, seed, config) or held_outcome(folder, method, seed)
        if skipped is not None:
            done[method, seed] = skipped
            announce(f"{method}, seed {seed}: {'recorded' if skipped.status != 'busy' else skipped.error}; not started")
            continue
        limit = resources.time_min * 60 if resources.time_min else None
        todo.append(RunJob(method, dataset, seed, output, overrides, config_file, resources.launcher,
                           grace_seconds(resources), limit, plugins))
    folder = output / LOG_DIR
    if slurm is not None:
        submitted = submit_slurm(slurm, todo, output, announce)
        if not resources.wait:
            announce(f"submitted {len(todo)} job{'s' if len(todo) != 1 else ''} (logs in {folder}); follow them with "
                     f"`noisybench status {output}`, and when every run is recorded: `noisybench leaderboard {output}`")
            return None
        done.update(wait_for(submitted))
    else:
        done.update(run_local(todo, folder, slots, output, announce))
    return [done[key] for key in configs if key in done]


def record_job(output: Path, run: Any, job: Any, total: int, index: int, announce: Callable[[str], None]) -> None:
    key = f"{run.dataset}/{run.method}/seed{run.seed}"
    update_manifest(output, {key: {"job_id": str(job.job_id), "log": str(job.paths.stdout), "submitted": now()}})
    announce(f"run {index} of {total}: {run.method}, seed {run.seed}, in {run.folder}, job {job.job_id}")


def submit_slurm(executor: Any, todo: list, output: Path, announce: Callable[[str], None]) -> list[tuple[Any, Any]]:
    if not todo:
        return []
    with executor.batch():
        jobs = [executor.submit(run) for run in todo]
    for index, (run, job) in enumerate(zip(todo, jobs), 1):
        record_job(output, run, job, len(todo), index, announce)
    return list(zip(jobs, todo))


def wait_for(submitted: list[tuple[Any, Any]]) -> dict[tuple[str, int], Outcome]:
    outcomes = {}
    while len(outcomes) < len(submitted):
        for job, run in submitted:
            if (run.method, run.seed) not in outcomes and job.done():
                outcomes[run.method, run.seed] = job_outcome(job, run)
        time.sleep(SLURM_POLL_S if len(outcomes) < len(submitted) else 0)
    return outcomes


def run_local(todo: list, folder: Path, slots: Slots, output: Path,
              announce: Callable[[str], None]) -> dict[tuple[str, int], Outcome]:
    """``slots.count`` submitit local jobs at a time; a freed slot (and its GPUs) takes the next run."""
    import submitit
    from submitit.helpers import environment_variables

    if not todo:
        return {}
    executor = submitit.LocalExecutor(folder, max_num_timeout=20)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, signal_delay_s=SIGNAL_DELAY_S)
    waiting, running, outcomes = list(todo), {}, {}
    try:
        while waiting or running:
            for slot in range(slots.count):
                if slot not in running and waiting:
                    run = waiting.pop(0)
                    if slots.gpus:
                        gpus = slots.gpus[slot]
                        executor.update_parameters(visible_gpus=gpus, gpus_per_node=len(gpus), tasks_per_node=len(gpus))
                    with environment_variables(**slots.environment):  # the job's process inherits them
                        running[slot] = (executor.submit(run), run)
                    record_job(output, run, running[slot][0], len(todo), len(todo) - len(waiting), announce)
            for slot, (job, run) in list(running.items()):
                if job.done():
                    outcomes[run.method, run.seed] = job_outcome(job, run)
                    del running[slot]
            time.sleep(POLL_S if running else 0)
    except KeyboardInterrupt:  # stop the jobs (each saves what a Ctrl-C saves) before leaving
        for job, _ in running.values():
            job.cancel()
        for job, _ in running.values():
            job.wait()
        raise
    return outcomes
