"""torchvision's image decoders called without their deprecation notice; imported by the
host decoders (images.py), the device decoder (devicedecode.py) and ``noisybench prepare``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_torchvision_io() -> Iterator[None]:
    """torchvision 0.29 marks its image decoders and encoders deprecated in favour of
    TorchCodec, which needs a system FFmpeg; they remain the fastest measured here, so the
    notice is silenced where they are called."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
        yield
