"""A preempted or timed-out job stops at an epoch boundary, then submitit requeues it.

Slurm warns a job with a signal (submitit asks for USR2, ``signal_delay_s`` seconds before the
end) and submitit's handler would checkpoint the job's callable and requeue it at once, in
the middle of an epoch, whose work is then lost. ``EpochBoundaryStop`` defers that handler:
the epoch under way finishes and its checkpoint is written (the run checkpoints after every
epoch), and at the start of the next one the handler runs: submitit writes the job's new
submission and requeues it, and the requeued job resumes the run from that checkpoint. If
the epoch cannot finish within ``grace_s`` seconds, the handler runs then, mid-epoch, and the
run resumes from the epoch before: nothing is lost that a crash would not lose.

It is a plugin object (hook ``noisybench_epoch_start``, called after the previous epoch's
checkpoint), so the training loop needs no change. The fine-tuning epochs of setting
``clean`` call no epoch-start hook: there the deadline decides.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from noisybench import hookimpl

logger = logging.getLogger("noisybench")


def job_signal() -> signal.Signals:
    """The signal submitit's jobs are warned with (USR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    from submitit import JobEnvironment

    return getattr(signal, "SIG" + JobEnvironment.USR_SIG)


class EpochBoundaryStop:
    """Defers the job's preemption handler to the next epoch boundary (see the module docstring)."""

    def __init__(self, grace_s: float, signum: int | None = None):
        self.grace_s = grace_s
        self.signum = signum
        self.original: Any = None
        self.alarm: Any = None  # SIGALRM's handler before the deadline was armed
        self.requested: tuple[int, Any] | None = None

    def install(self) -> None:
        """Take over the job's signal; submitit's handler, installed before the job's callable
        runs, is kept to be called later."""
        self.signum = self.signum or job_signal()
        self.original = signal.getsignal(self.signum)
        signal.signal(self.signum, self.on_signal)

    def uninstall(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self.alarm is not None:
            signal.signal(signal.SIGALRM, self.alarm)
            self.alarm = None
        if self.original is not None:
            signal.signal(self.signum, self.original)
            self.original = None

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            return
        self.requested = (signum, frame)
        logger.warning(f"signal {signal.Signals(signum).name}: the run stops after this epoch's checkpoint "
                       f"(or in {self.grace_s:.0f} s) and its job is requeued")
        self.alarm = signal.signal(signal.SIGALRM, self.on_deadline) or signal.SIG_DFL
        signal.setitimer(signal.ITIMER_REAL, max(self.grace_s, 0.001))

    def on_deadline(self, signum: int, frame: Any) -> None:
        logger.warning("the epoch did not end in time: stopping now; the run resumes from its last checkpoint")
        self.hand_over()

    def hand_over(self) -> None:
        """Run the deferred handler (submitit: checkpoint, requeue, exit)."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        requested, self.requested = self.requested, None
        if callable(self.original) and requested is not None:
            self.original(*requested)

    @hookimpl(tryfirst=True)
    def noisybench_epoch_start(self, epoch: int) -> None:
        if self.requested is not None:
            self.hand_over()
