"""When SMP may start correcting labels: once the model can support it (``start_epoch=auto``).

A correction is only as good as the features it clusters. From scratch, the model after one
epoch is weak: its first correction may change most labels, and training then follows the
wrong ones. ``ready`` says the model has learnt what it will learn quickly: its accuracy on
the held-out (val) split has risen above chance and the last epoch added at most
``fraction`` of everything gained so far. Without a val split, or if that never happens,
corrections start at ``latest_start``: half-way through training.
"""

from __future__ import annotations

from collections.abc import Sequence


def ready(val_accuracies: Sequence[float | None], num_classes: int, fraction: float) -> bool:
    """Whether the val curve so far (one entry per epoch) has flattened above chance."""
    curve = [a for a in val_accuracies if a is not None]
    if len(curve) < 2:
        return False
    gained = curve[-1] - 1.0 / num_classes
    return gained > 0 and curve[-1] - curve[-2] <= fraction * gained


def latest_start(num_epochs: int) -> int:
    """The epoch by which corrections start whatever the curve says: half-way."""
    return num_epochs // 2 + 1
