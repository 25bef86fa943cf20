"""A training split's augmentation: ``data.crop_padding`` and ``data.flip`` resolved.

A horizontal flip changes what a digit, a letter or a character means (a flipped 2 is no 2),
so ``data.flip=auto`` flips colour images only: single-channel images (digits, MNIST-like
scans, X-rays) are not flipped. ``data.crop_padding=auto`` is the dataset's own padding of
its random crop: 1 pixel for 8x8 digits, 4 for CIFAR, an eighth of the side for small user
images, none for photos (their crop moves within the resized short edge instead).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# PIL modes of single-channel images: bilevel, 8-bit, 16- and 32-bit grey (with alpha too)
SINGLE_CHANNEL_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")


@dataclass(frozen=True)
class Augmentation:
    crop_padding: int
    flip: bool
    why: str  # how auto was resolved, for the choices line ("" when both keys were given)

    def words(self) -> str:
        """For the choices line."""
        text = f"augmentation: random crop padding {self.crop_padding}, {'flip' if self.flip else 'no flip'}"
        return f"{text} ({self.why})" if self.why else text

    def record(self) -> dict[str, Any]:
        """For the record's ``choices``."""
        return asdict(self)


def resolve(data: dict[str, Any], own_padding: int, single_channel: bool) -> Augmentation:
    """``data.crop_padding`` and ``data.flip`` with ``auto`` replaced: ``own_padding`` (the
    dataset's) and a flip for images of three channels only."""
    padding = own_padding if data["crop_padding"] == "auto" else data["crop_padding"]
    notes = []
    if data["flip"] == "auto":
        flip = not single_channel
        notes.append("data.flip=auto: " + ("no flip for single-channel images" if single_channel
                                           else "colour images are flipped"))
    else:
        flip = bool(data["flip"])
    if data["crop_padding"] == "auto":
        notes.append(f"data.crop_padding=auto: the dataset's {own_padding}")
    return Augmentation(padding, flip, "; ".join(notes))


def augmented(dataset, augmentation: Augmentation):
    """An in-memory training set (memory.MemoryImages) given ``augmentation`` as its batch
    augmentation, and marked with it for the choices line and the record."""
    from noisybench.datasets.memory import BatchAugment

    some = augmentation.crop_padding or augmentation.flip
    dataset.augment = BatchAugment(augmentation.crop_padding, augmentation.flip) if some else None
    dataset.augmentation = augmentation
    return dataset


def find_augmentation(dataset) -> Augmentation | None:
    """The augmentation of a training set under its wrappers (a relabelled or subset view
    keeps its dataset as ``base``), or None where the dataset does not say."""
    while dataset is not None:
        if getattr(dataset, "augmentation", None) is not None:
            return dataset.augmentation
        dataset = getattr(dataset, "base", None)
    return None
