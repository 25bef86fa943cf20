"""Images held in memory (digits, CIFAR), transformed a whole batch at a time.

Per-sample transforms cost more than the step on images this small (40% of a digits epoch
went to them). The DataLoader fetches a batch through ``__getitems__``; the batch is cropped
and flipped with a few tensor operations (normalisation is the model's, on its device), with the distribution of torchvision's
``RandomCrop(size, padding)`` (zero padding; offsets uniform over the 2·padding + 1 positions
in each direction) and ``RandomHorizontalFlip`` (p = 0.5), drawn per sample from the
batch's stream and the sample's index (draws.py: the same whichever worker or process
fetches it), or from torch's generator outside a keyed fetch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from noisybench.datasets import draws


class BatchAugment:
    """Random crop of ``padding`` around each image and a horizontal flip, per sample, batched."""

    def __init__(self, padding: int, flip: bool):
        self.padding, self.flip = padding, flip

    def draw(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: (top, left) of the crop in the padded image, and whether it is flipped."""
        positions = 2 * self.padding + 1
        key = draws.current()
        if key is None:
            count = len(indices)
            return (torch.randint(0, positions, (count,)), torch.randint(0, positions, (count,)),
                    torch.rand(count) < 0.5)
        u = torch.from_numpy(draws.uniforms(key, indices, 3))
        return (u[:, 0] * positions).long(), (u[:, 1] * positions).long(), u[:, 2] < 0.5

    def __call__(self, images: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
        b, _, h, w = images.shape
        top, left, flipped = self.draw(indices)
        if self.padding:
            padded = torch.nn.functional.pad(images, [self.padding] * 4)
            rows = (top[:, None] + torch.arange(h))[:, :, None]  # B×H×1
            cols = (left[:, None] + torch.arange(w))[:, None, :]  # B×1×W
            images = padded[torch.arange(b)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images


class MemoryImages(Dataset):
    """N×C×H×W images (uint8 in 0-255, or float in 0-1) with labels; items are (image, label,
    index) with the image as stored. ``normalization`` (mean, std) is what the model applies
    (models.InputNormalize); ``augment`` (training only) crops the unnormalised image, as
    torchvision's pipeline does (padding is black, not the mean)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, mean: Sequence[float], std: Sequence[float],
                 augment: BatchAugment | None = None):
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.normalization = (tuple(mean), tuple(std))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """The (augmented) images of ``indices`` as one B×C×H×W tensor."""
        images = self.images[torch.as_tensor(indices, dtype=torch.long)]
        return images if self.augment is None else self.augment(images, indices)

    def __getitems__(self, indices: Sequence[int]) -> list:
        images = self.batch(indices)
        return [(image, self.labels[i], i) for image, i in zip(images, indices)]

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]
