"""One run of a sweep as one submitit job: what runs inside the job, on its node.

``RunJob`` is pickled by submitit and called in the job (one process per task: one task per
GPU of the run). It sets up torch.distributed for the run's tasks (Accelerate reads
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``), defers the scheduler's
warning signal to the next epoch boundary (``preemption.py``), records the job in the run
folder (``job.json``) and runs it as a sequential sweep would (``compare.run_one``), always
resuming. Its ``checkpoint`` (submitit's requeue hook) resubmits the same job: the run's
own checkpoint holds the progress.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from noisybench import records

BUSY_RETRIES = 3  # `noisybench status` holds a run's lock for an instant to see whether it is free


class RunJob(Checkpointable):
    """``RunJob(...)()`` trains one run of a sweep in a submitit job and returns its ``Outcome``."""

    def __init__(self, method: str, dataset: str, seed: int, output: str | Path, overrides: list[str],
                 config_file: str | Path | None, launcher: str, grace_s: float, time_limit_s: float | None = None,
                 plugins: tuple[Any, ...] = ()):
        self.method, self.dataset, self.seed = method, dataset, seed
        self.output, self.overrides, self.config_file = str(output), list(overrides), config_file
        self.launcher, self.grace_s, self.time_limit_s = launcher, grace_s, time_limit_s
        self.plugins = tuple(plugins)
        self.started: tuple[float, int] | None = None  # (when, epochs saved) as this attempt began

    @property
    def folder(self) -> Path:
        from noisybench.compare import run_folder

        return run_folder(Path(self.output), self.dataset, self.method, self.seed)

    def saved_epochs(self) -> int:
        saved = records.latest_checkpoint(self.folder)
        return records.saved_epochs(saved) if saved is not None else 0

    def __call__(self) -> Any:
        import submitit

        from noisybench.compare import run_one
        from noisybench.preemption import EpochBoundaryStop
        from noisybench.sweepstate import JobRecord

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # the run's processes, one per task
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        self.started = (time.time(), self.saved_epochs())
        stop = EpochBoundaryStop(self.grace_s)
        stop.install()
        plugins = [*self.plugins, JobRecord(self.launcher, env.job_id, str(env.paths.stdout)), stop]
        try:
            for attempt in range(BUSY_RETRIES):
                outcome = run_one(self.method, self.dataset, self.seed, self.output, self.overrides,
                                  self.config_file, plugins)
                if outcome.status != "busy" or attempt == BUSY_RETRIES - 1:
                    return outcome
                time.sleep(1)
        finally:
            stop.uninstall()

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:
        """submitit's requeue hook: the same job again, unless a whole time limit passed
        without one epoch saved (an epoch longer than ``--time`` would requeue forever)."""
        if self.started is not None and self.time_limit_s:
            since, epochs = self.started
            if self.saved_epochs() == epochs and time.time() - since >= 0.8 * self.time_limit_s:
                from noisybench.compare import FAILED_FILE

                message = (f"no epoch finished within the job's time limit ({self.time_limit_s / 60:.0f} min): "
                           "give each run more --time")
                records.write_json(self.folder / FAILED_FILE, {"method": self.method, "seed": self.seed,
                                                                "error": message, "traceback": ""})
                return None
        self.started = None
        return DelayedSubmission(self, *args, **kwargs)
