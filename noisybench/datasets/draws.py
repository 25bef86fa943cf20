"""Random draws keyed by the sample: its augmentation is the same whichever loader worker or
process reads it, so ``data.num_workers`` and the split of a batch over processes change no
result.

A loader that augments (loaders.py) fetches each batch under a *stream*, a 64-bit key of
(seed, epoch, view) for the training loader, (seed, pass) for a method's own loader; the
transforms then draw from the stream and the sample's index in its dataset: in-memory
batches from ``uniforms`` (a counter-based hash, splitmix64's finaliser: no generator
state at all), per-file transforms from torch's generator seeded for the one sample by
``seeded``, which puts the generator back afterwards. Outside a keyed fetch (a dataset
indexed by hand) the transforms draw from torch's generator, as torchvision's do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: splitmix64's increment
TRAIN, LOADER = 1, 2  # the first part of a stream: the training loader (and views), a method's loader
_current: list[int | None] = [None]  # this process's stream while a keyed batch is fetched


def _mix(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 words (a bijection that scatters every input bit)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def stream(*parts: int) -> int:
    """One 64-bit key for (kind, seed, epoch, view, ...)."""
    key = 0
    for part in parts:
        key = _mix((key + GOLDEN + (int(part) & MASK)) & MASK)
    return key


def sample_keys(key: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Each sample's 64-bit key in stream ``key``."""
    with np.errstate(over="ignore"):
        index = np.asarray(indices, dtype=np.uint64) + np.uint64(GOLDEN)
        return mix64(mix64(index) ^ np.uint64(key))


def uniforms(key: int, indices: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """``len(indices)`` × ``count`` uniform numbers in [0, 1) (53 bits each), a row per sample."""
    keys = sample_keys(key, indices)
    with np.errstate(over="ignore"):
        words = mix64(keys[:, None] + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(GOLDEN))
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def current() -> int | None:
    """The stream of the batch being fetched in this process, or None outside a keyed fetch."""
    return _current[0]


@contextmanager
def drawing(key: int | None) -> Iterator[None]:
    """Fetch under stream ``key`` (this process only: each loader worker sets its own)."""
    before, _current[0] = _current[0], key
    try:
        yield
    finally:
        _current[0] = before


@contextmanager
def seeded(index: int) -> Iterator[None]:
    """Torch's generator seeded for sample ``index`` of the current stream, and put back
    after; outside a keyed fetch, the generator as it is."""
    key = _current[0]
    if key is None:
        yield
        return
    state = torch.get_rng_state()  # the CPU generator's alone: torch.manual_seed and fork_rng would
    torch.default_generator.manual_seed(int(sample_keys(key, [index])[0] >> np.uint64(1)))  # visit every device: ms
    try:
        yield
    finally:
        torch.set_rng_state(state)
