"""compare's launchers (submitit's local executor, the Slurm path without a cluster), a job's
requeue after preemption, and ``noisybench status``."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
from conftest import comparable, read_metrics

from noisybench import hookimpl, leaderboard
from noisybench.cli import main
from noisybench.compare import sweep
from noisybench.launchers import Resources, launch
from noisybench.lock import RunLock
from noisybench.sweepstate import JOB_FILE, update_manifest

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # PreemptOnce travels into the jobs by value
COMMON = ["epochs=2", "progress=false", "threads=1", "noise=symmetric:0.4"]
RUNS = [("ce", 0), ("ce", 1), ("smp", 0), ("smp", 1)]


class PreemptOnce:
    """Stands in for Slurm's preemption warning: the job's own signal, sent to run (method,
    seed) as its first epoch ends; the job finishes the epoch, checkpoints and requeues."""

    def __init__(self, method: str, seed: int):
        self.method, self.seed = method, seed

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        if (run.method, run.config["seed"], epoch) == (self.method, self.seed, 1):
            os.kill(os.getpid(), signal.SIGUSR2)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def board(folder: Path) -> pd.DataFrame:
    """The leaderboard without what depends on scheduling (time, memory)."""
    table = pd.read_csv(io.StringIO(leaderboard.report(folder, "csv")))
    return table.drop(columns=[c for c in table if c.startswith(("seconds", "peak_memory")) or c == "ratio_to_ce"])


def test_two_jobs_at_once_with_a_preempted_one_record_what_a_sequential_sweep_records(tmp_path):
    sequential = sweep(["ce", "smp"], "digits", [0, 1], tmp_path / "seq", COMMON, announce=lambda line: None)
    assert {o.status for o in sequential} == {"done"}
    lines = []
    outcomes = launch(["ce", "smp"], "digits", [0, 1], tmp_path / "par", Resources("local", jobs=2), COMMON,
                      plugins=[PreemptOnce("ce", 0)], announce=lines.append)
    assert {(o.method, o.seed): o.status for o in outcomes} == {
        ("ce", 0): "resumed", ("ce", 1): "done", ("smp", 0): "done", ("smp", 1): "done"}
    manifest = json.loads((tmp_path / "par" / "sweep.json").read_text())["runs"]
    for method, seed in RUNS:
        key = f"digits/{method}/seed{seed}"
        ours, theirs = tmp_path / "par" / key, tmp_path / "seq" / key
        assert comparable(read_metrics(ours)) == comparable(read_metrics(theirs))  # the preempted run too
        assert [h["epoch"] for h in read_metrics(ours)["history"]] == [1, 2]  # each epoch trained once
        job = json.loads((ours / JOB_FILE).read_text())
        assert job["job_id"] == manifest[key]["job_id"] and Path(job["log"]).parent == tmp_path / "par" / "logs"
        assert job["starts"] == (2 if (method, seed) == ("ce", 0) else 1)  # requeued once, in the same job
    requeued = Path(manifest["digits/ce/seed0"]["log"])
    assert "Requeued job" in requeued.read_text()
    log = (tmp_path / "par" / "digits" / "ce" / "seed0" / "run.log").read_text().splitlines()
    starts = [i for i, line in enumerate(log) if "noisybench: choices:" in line]
    warned = next(i for i, line in enumerate(log) if "SIGUSR2" in line)
    epoch_1 = next(i for i, line in enumerate(log) if "noisybench: epoch 1 |" in line)
    assert starts[0] < warned < epoch_1 < starts[1]  # the epoch under way finished before the job requeued
    pd.testing.assert_frame_equal(board(tmp_path / "par" / "digits"), board(tmp_path / "seq" / "digits"))
    assert sum(line.startswith("run ") for line in lines) == 4
    again = launch(["ce", "smp"], "digits", [0, 1], tmp_path / "par", Resources("local", jobs=2), COMMON,
                   announce=lines.append)  # recorded runs are not started again
    assert {o.status for o in again} == {"finished before"}
    assert json.loads((tmp_path / "par" / "sweep.json").read_text())["runs"] == manifest


def test_status_reads_recorded_running_held_failed_and_pending_runs_from_the_folders(tmp_path, clean_ce_run):
    runs = tmp_path / "digits"
    shutil.copytree(clean_ce_run, runs / "ce" / "seed0", ignore=shutil.ignore_patterns("run.lock"))
    update_manifest(tmp_path, {"digits/ce/seed0": {"job_id": "77_0"},
                               "digits/smp/seed1": {"job_id": "77_3", "epochs": 5}})
    running, held, failed = runs / "elr" / "seed0", runs / "elr" / "seed1", runs / "smp" / "seed0"
    for folder in (running, held, failed):
        folder.mkdir(parents=True)
    (running / "checkpoint").mkdir()
    (running / "checkpoint" / "state.json").write_text(json.dumps({"progress": {"epochs_done": 2}}))
    (running / "config.yaml").write_text("epochs: 6\n")
    me = {"job_id": "77_1", "host": socket.gethostname(), "pid": os.getpid()}
    (running / JOB_FILE).write_text(json.dumps(me))
    (held / JOB_FILE).write_text(json.dumps({**me, "pid": os.getpid() + 1}))  # an earlier job of the sweep
    (failed / "failed.json").write_text(json.dumps({"error": "RuntimeError: boom\n\x1b[31mmore", "traceback": "..."}))
    with RunLock(running), RunLock(held):  # this process stands for the jobs
        code, out, err = cli("status", str(tmp_path))
    assert code == 0 and err == ""
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in out.splitlines()[1:-1]}
    assert rows["digits/ce/seed0"][:2] == ["recorded", "77_0"] and rows["digits/ce/seed0"][2].startswith("test acc 0.")
    assert rows["digits/elr/seed0"] == ["running", "77_1", f"epoch 3 of 6 (2 saved) on {socket.gethostname()}"]
    assert rows["digits/elr/seed1"][0] == "held" and f"process {os.getpid()} on" in rows["digits/elr/seed1"][2]
    assert rows["digits/smp/seed0"] == ["failed", "-", "RuntimeError: boom"]
    assert rows["digits/smp/seed1"] == ["pending", "77_3", "not started"]
    assert out.splitlines()[-1] == "5 runs: 1 recorded, 1 running, 1 held, 1 failed, 1 pending"
    assert not (failed / "run.lock").exists() and not (runs / "ce" / "seed0" / "run.lock").exists()
    code, out, _ = cli("status", str(tmp_path))  # the locks given back: the run left is no longer held
    assert code == 0 and "digits/elr/seed0  pending" in out and "2 epoch(s) saved" in out


def test_status_imports_no_torch_and_refuses_a_folder_without_runs(tmp_path):
    (tmp_path / "digits" / "ce" / "seed0").mkdir(parents=True)
    code = ("import sys; from noisybench.cli import main; c = main(['status', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(c)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "digits/ce/seed0  pending" in done.stdout
    code, _, err = cli("status", str(tmp_path / "digits"))
    assert code == 2 and err.count("\n") == 1 and "no runs" in err


@pytest.mark.parametrize("flags, named", [
    (["--jobs", "0"], "--jobs 0"),
    (["--jobs", "two"], "--jobs two"),
    (["--launcher", "slurm", "--time", "60", "--slurm", "gpus=2"], "--slurm gpus"),
    (["--launcher", "slurm", "--time", "60", "--slurm", "mem"], "--slurm mem"),
    (["--launcher", "slurm", "--time", "1h"], "--time 1h"),
    (["--launcher", "slurm"], "needs --time"),
    (["--partition", "gpu"], "--partition"),
])
def test_bad_resources_are_one_line_errors_that_write_nothing(tmp_path, flags, named):
    code, out, err = cli("compare", "--methods", "ce", "--dataset", "digits", "--output", str(tmp_path / "out"), *flags)
    assert code == 2 and err.count("\n") == 1 and named in err, err
    assert not (tmp_path / "out").exists()


def test_local_slots_deal_out_the_gpus_and_share_the_cores(monkeypatch):
    import torch

    from noisybench.errors import NoisybenchError
    from noisybench.launchers import local_devices

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert local_devices(Resources("local", jobs=8)).gpus == [[0], [1], [2], [3]] * 2  # two runs a GPU
    assert local_devices(Resources("local", jobs=2, gpus_per_run=2)).gpus == [[0, 1], [2, 3]]
    with pytest.raises(NoisybenchError, match="--gpus-per-run 5: this machine has 4 GPUs"):
        local_devices(Resources("local", jobs=2, gpus_per_run=5))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slots = local_devices(Resources("local", jobs=3))
    assert (slots.count, slots.gpus, slots.environment) == (3, [], {"OMP_NUM_THREADS": "2"})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's setting stays
    assert local_devices(Resources("local", jobs=3)).environment == {}


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """srun and sbatch stand-ins on PATH: sbatch keeps the script it is given and answers with a job id."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "submitted.sh"


def test_the_slurm_launcher_submits_one_array_job_per_run_with_the_resources_asked_for(tmp_path, monkeypatch):
    from submitit.core.utils import DelayedSubmission

    script = fake_slurm(tmp_path, monkeypatch)
    out = tmp_path / "sweep"
    code, text, err = cli("compare", "--launcher", "slurm", "--methods", "ce,smp", "--dataset", "digits",
                          "--seeds", "0,1", "--output", str(out), "--jobs", "2", "--gpus-per-run", "2",
                          "--cpus-per-run", "16", "--partition", "gpu", "--account", "lab", "--time", "1-00:00:00",
                          "--slurm", "mem=64G", "--slurm", "qos=high", "epochs=2")
    assert code == 0, err
    sbatch = script.read_text().splitlines()
    for flag in ("--partition=gpu", "--account=lab", "--time=1440", "--gpus-per-node=2", "--ntasks-per-node=2",
                 "--cpus-per-task=8", "--mem=64G", "--qos=high", "--array=0-3%2", "--signal=USR2@120", "--nodes=1",
                 "--job-name=noisybench-digits", f"--output={out}/logs/%A_%a_0_log.out"):
        assert f"#SBATCH {flag}" in sbatch, flag
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in sbatch)
    manifest = json.loads((out / "sweep.json").read_text())["runs"]
    assert [manifest[f"digits/{m}/seed{s}"]["job_id"] for m, s in RUNS] == ["4242_0", "4242_1", "4242_2", "4242_3"]
    job = DelayedSubmission.load(out / "logs" / "4242_3_submitted.pkl").function  # what the array task will call
    assert (job.method, job.seed, job.grace_s, job.time_limit_s, job.launcher) == ("smp", 1, 90, 86400, "slurm")
    assert job.checkpoint().function is job  # submitit's requeue resubmits the same run, which resumes
    assert "noisybench status" in text
    code, status, _ = cli("status", str(out))
    assert code == 0 and status.splitlines()[-1] == "4 runs: 4 pending" and "4242_2" in status


def test_the_epoch_boundary_stop_defers_the_jobs_handler_to_the_next_epoch_or_the_deadline():
    from noisybench.preemption import EpochBoundaryStop

    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # submitit's handler
    stop = EpochBoundaryStop(grace_s=600, signum=signal.SIGUSR2)
    stop.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert calls == [] and signal.getitimer(signal.ITIMER_REAL)[0] > 0  # the epoch goes on, a deadline armed
        stop.noisybench_epoch_start(epoch=3)
        assert calls == [signal.SIGUSR2] and signal.getitimer(signal.ITIMER_REAL)[0] == 0
        stop.noisybench_epoch_start(epoch=4)  # nothing pending: nothing happens
        os.kill(os.getpid(), signal.SIGUSR2)
        stop.on_deadline(signal.SIGALRM, None)  # the epoch did not end in time
        assert calls == [signal.SIGUSR2] * 2
    finally:
        stop.uninstall()
        signal.signal(signal.SIGUSR2, previous)


def test_a_job_whose_time_limit_passes_without_an_epoch_saved_is_not_requeued(tmp_path):
    import time

    from noisybench.jobs import RunJob

    job = RunJob("ce", "digits", 0, tmp_path, [], None, "slurm", grace_s=90, time_limit_s=600)
    job.started = (time.time() - 60, 0)
    assert job.checkpoint().function is job  # preempted early: requeued
    job.started = (time.time() - 590, 0)
    assert job.checkpoint() is None
    failed = json.loads((tmp_path / "digits" / "ce" / "seed0" / "failed.json").read_text())
    assert "give each run more --time" in failed["error"]
