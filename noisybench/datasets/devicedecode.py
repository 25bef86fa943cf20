"""``data.decoder=gpu``: JPEGs decoded on the GPU, a batch at a time, then resized and cropped there.

Loader workers then only read files and parse headers: an item's image is an ``Encoded``
(the JPEG's bytes, or for any other format the CPU-decoded pixels, and how to transform
it). ``collate`` keeps a batch's as a plain list, which Accelerate leaves on the host, and
the model's ``InputNormalize`` calls ``decode_batch`` on its device: one batched
``torchvision.io.decode_jpeg``, then per image the paper pipeline's resize (short edge,
antialiased) and its random crop and flip (a training split) or centre crop. The crop and
flip are drawn when the item is loaded, with RandomCrop's and RandomHorizontalFlip's
distributions, from torch's generator seeded for the sample (draws.py: the same in any
worker), and travel with the item: a batch gives the same images however often a
method forwards it (LSW's meta-step forwards the noisy batch more than once).

Selected only where CUDA is present and for the photo pipeline (crops of 96 pixels and
more); elsewhere ``gpu`` means ``scaled`` (``resolve_decoder``). Written for any device,
so its tests run it on the CPU. A JPEG whose header reads but which the device decoder
refuses becomes the normalisation mean (zeros for the model), as a corrupt file does,
but is not counted in the run's corrupt-image totals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from noisybench.datasets.torchvision_io import quiet_torchvision_io

DEVICE = "device"  # ImageFiles.decoder value once ``gpu`` is resolved on a CUDA machine


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_decoder(setting: str, size: int) -> str:
    """The decoder ImageFiles uses: ``gpu`` becomes DEVICE with CUDA and the photo pipeline,
    else ``scaled``; every other setting is itself."""
    if setting != "gpu":
        return setting
    return DEVICE if cuda_available() and size >= 96 else "scaled"


class Encoded:
    """One image for the device decoder: ``data`` (a JPEG's bytes) or ``pixels`` (C×H×W uint8
    already decoded), and its transform: short edge ``resize``, crop ``size``, and for a
    training split ``crop`` = (top, left as fractions of the free range, flip)."""

    __slots__ = ("data", "pixels", "resize", "size", "crop")

    def __init__(self, resize: int, size: int, train: bool, data: np.ndarray | None = None,
                 pixels: torch.Tensor | None = None, flip: bool = True):
        self.data, self.pixels, self.resize, self.size = data, pixels, resize, size
        self.crop = (float(torch.rand(())), float(torch.rand(())), bool(torch.rand(()) < 0.5) and flip) if train else None

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape the image has once transformed."""
        return (3, self.size, self.size)


class EncodedBatch(list):
    """A batch of ``Encoded``: a list, so Accelerate's device transfer leaves it on the host."""


def collate(items: list) -> Any:
    """Default collation, but a batch of ``Encoded`` images stays a list (EncodedBatch)."""
    if items and isinstance(items[0][0], Encoded):
        rest = default_collate([item[1:] for item in items])
        return [EncodedBatch(item[0] for item in items), *rest]
    return default_collate(items)


def decode_jpegs(data: list[np.ndarray], device: torch.device) -> list[torch.Tensor | None]:
    """Batched decode into RGB on ``device``; if the batch fails, image by image (None for
    one that fails alone)."""
    tensors = [torch.from_numpy(d) for d in data]
    with quiet_torchvision_io():
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        decoded: list[torch.Tensor | None] = []
        for tensor in tensors:
            try:
                decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def transform(image: torch.Tensor, item: Encoded) -> torch.Tensor:
    """Resize to the short edge, then the item's crop and flip (train) or the centre crop."""
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image, item.resize, antialias=True)
    if item.crop is None:
        return F.center_crop(image, [item.size, item.size])
    height, width = image.shape[-2:]
    top_fraction, left_fraction, flip = item.crop
    top = min(int(top_fraction * (height - item.size + 1)), height - item.size)  # uniform over the offsets
    left = min(int(left_fraction * (width - item.size + 1)), width - item.size)
    image = F.crop(image, top, left, item.size, item.size)
    return F.horizontal_flip(image) if flip else image


def decode_batch(batch: EncodedBatch, device: torch.device, fill: torch.Tensor) -> torch.Tensor:
    """B×3×size×size uint8 on ``device``; ``fill`` (3 uint8 values) replaces a JPEG the
    device decoder refuses."""
    jpegs = [i for i, item in enumerate(batch) if item.data is not None]
    images: list[torch.Tensor | None] = [None] * len(batch)
    for i, image in zip(jpegs, decode_jpegs([batch[i].data for i in jpegs], device)):
        images[i] = image
    out = []
    for item, image in zip(batch, images):
        if image is None:
            image = (item.pixels.to(device) if item.pixels is not None
                     else fill.to(device).view(3, 1, 1).expand(3, item.resize, item.resize))
        out.append(transform(image, item))
    return torch.stack(out)
