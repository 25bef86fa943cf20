"""noisybench: train and compare methods for learning image classifiers from noisy labels."""

import time

import pluggy

STARTED = time.perf_counter()  # the first thing `noisybench` does; torch and the rest import after it

from noisybench.threads import prefer_passive_wait  # noqa: E402  (before anything imports torch)

prefer_passive_wait()

__version__ = "0.2.0"

hookimpl = pluggy.HookimplMarker("noisybench")
"""Marker for method hook implementations: ``@hookimpl def noisybench_loss(...)``."""

__all__ = ["__version__", "hookimpl"]
