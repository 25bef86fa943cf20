"""Phase timers that wait for the accelerator once per outermost phase, not once per phase.

A phase inside a training step (LSW's ``meta``) closes thousands of times an epoch; a
``cuda.synchronize`` at each close would stall the host and starve the GPU of queued
work. On CUDA a phase records events on the stream instead, and their times are read when
the outermost open phase closes, after one wait. On the CPU the clock is ``perf_counter``.

Phases nest; each second counts once, in the innermost phase (an outer phase's time less
its children's).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


class HostClock:
    """``perf_counter`` stamps; nothing to wait for."""

    def stamp(self) -> float:
        return time.perf_counter()

    def wait(self, stamp: float) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaClock:
    """CUDA events recorded on the current stream; ``wait`` is the one host sync."""

    def __init__(self, device: torch.device):
        self.device = device

    def stamp(self) -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def wait(self, stamp: Any) -> None:
        stamp.synchronize()

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000.0


def clock_for(device: torch.device) -> HostClock | CudaClock:
    return CudaClock(device) if device.type == "cuda" else HostClock()


@dataclass
class _Open:
    name: str
    start: Any
    end: Any = None
    children: list["_Open"] = field(default_factory=list)


class PhaseTimer:
    """Accumulates seconds per phase name into ``seconds``."""

    def __init__(self, clock: Any, seconds: dict[str, float] | None = None):
        self.clock = clock
        self.seconds = defaultdict(float) if seconds is None else seconds
        self._stack: list[_Open] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        node = _Open(name, self.clock.stamp())
        (self._stack[-1].children if self._stack else []).append(node)
        self._stack.append(node)
        try:
            yield
        finally:
            node.end = self.clock.stamp()
            self._stack.pop()
            if not self._stack:  # the outermost phase: wait once, then read every stamp
                self.clock.wait(node.end)
                self._add(node)

    def _add(self, node: _Open) -> float:
        elapsed = self.clock.seconds(node.start, node.end)
        inner = sum(self._add(child) for child in node.children)
        self.seconds[node.name] += elapsed - inner
        return elapsed
