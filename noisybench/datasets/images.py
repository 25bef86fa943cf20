"""Image files on disk: decoding, the paper transforms, and the corrupt-image policy.

Decoding: with ``data.decoder=torchvision`` JPEG and WebP go through torchvision's decoders
and every other format PIL reads (PNG, GIF, BMP, TIFF, PPM, ...) through PIL, as does a
16-bit image, whose values are scaled to 8 bits (not clipped). PNG goes through PIL because
torchvision's libpng wrapper kills the process (SIGSEGV) on a PNG whose data ends early or
fails its CRC (libpng's "Not enough image data"; 40 of 79 truncated or bit-flipped PNGs
here), and only once ``pngcheck.png_intact`` found it whole (PIL would decode a short one
with black rows): 2.1x torchvision's time for an 800x600 PNG, measured interleaved here; JPEG
is unchanged. A GIF is read as its first frame (torchvision gives an animated GIF's every
frame, which broke the batch); ``.gif`` files are images of an image folder too. ``scaled`` (the default)
decodes a JPEG twice the pipeline's short edge or more at 1/2, 1/4 or 1/8 of its size
(libjpeg-turbo's DCT scaling, 1.46x the images/s of a full decode on 800x600 photos) and
every other image as ``torchvision``. ``gpu`` decodes JPEGs on the GPU (devicedecode.py). The header is read first:
an image of more than ``data.max_pixels`` pixels is not decoded (a decompression bomb or a
poster-sized scan would exhaust memory) and counts as unreadable, as does one that the
pipeline's resize would blow up past that many pixels (a 1x60000 strip resized to a short
edge of 256). Only regular files of at most ``4 x data.max_pixels`` bytes (plus 1 MiB) are
read (inputs.py): a FIFO, a device, a symlink loop or a 12 GiB sparse file counts as
unreadable instead of blocking or filling memory.

Corrupt-image policy: an image that cannot be read or decoded (truncated, not an image,
missing, too large) does not stop the run. It is decoded as a constant image of the dataset's mean
colour, which is all zeros after normalisation, and keeps its label and index, so the
result does not depend on worker timing. Each such image is marked in a mask shared by
the loader workers; the run reports them once and lists them in ``samples.csv``.
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from noisybench.datasets.pngcheck import png_intact
from noisybench.datasets.torchvision_io import quiet_torchvision_io
from noisybench.inputs import NotRegular, is_regular, open_regular, read_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")  # lower case
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODERS = ("pil", "torchvision", "scaled", "device")


def paper_transforms(train: bool, size: int = 224, resize: int = 256):
    """The SMP paper's pipeline: short edge to 256, random 224 crop and flip (train) or centre
    crop (eval). Ends in uint8: the model normalises on its device (models.InputNormalize),
    so workers send a quarter of the bytes."""
    from torchvision.transforms import v2

    crop = [v2.RandomCrop(size), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(size)]
    return v2.Compose([v2.ToImage(), v2.Resize(resize, antialias=True), *crop])


def small_transforms(train: bool, size: int, flip: bool = True):
    """For 32-pixel images: pad-4 random crop and flip (train); plain uint8 tensors (eval)."""
    from torchvision.transforms import v2

    augment = [v2.RandomCrop(size, padding=size // 8)] + ([v2.RandomHorizontalFlip()] if flip else [])
    return v2.Compose([v2.ToImage(), *(augment if train else [])])


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TORCHVISION_FORMATS = ("JPEG", "WEBP")  # not PNG: see the module docstring
MAX_PIXELS = 64_000_000


def file_limit(max_pixels: int) -> int:
    """The largest image file read: an uncompressed 32-bit image of ``max_pixels`` pixels, and 1 MiB."""
    return 4 * max_pixels + 2**20


def rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; a 16-bit image is scaled (65535 -> 255), where PIL's convert would clip it to white."""
    if image.mode in SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def decode_pil(data: bytes, draft_size: int | None = None) -> Image.Image:
    """PIL decode; ``draft_size`` lets libjpeg scale down by 1/2, 1/4 or 1/8 while decoding."""
    with Image.open(io.BytesIO(data)) as image:
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.seek(0)  # an animated image's first frame
        return rgb(image)


class TooLarge(ValueError):
    """An image over the pixel limit: counted as unreadable, never decoded."""


def image_header(data: bytes, max_pixels: int, short_edge: int | None = None) -> tuple[str | None, str, int]:
    """(format, mode, short side) from the header alone; TooLarge past ``max_pixels``, or past
    it once resized to a short edge of ``short_edge`` (an extreme aspect ratio)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > max_pixels or min(width, height) < 1:
            raise TooLarge(f"{width}x{height} pixels")
        if short_edge and short_edge * short_edge * max(width, height) / min(width, height) > max_pixels:
            raise TooLarge(f"{width}x{height} pixels: resized to a short edge of {short_edge}, over the pixel limit")
        return image.format, image.mode, min(width, height)


def decode_torchvision(data: bytes) -> torch.Tensor:
    """torchvision's libjpeg-turbo/libpng decode into a uint8 C×H×W tensor."""
    with quiet_torchvision_io():
        from torchvision.io import ImageReadMode, decode_image

        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def decode_scaled(data: bytes, short_side: int) -> torch.Tensor:
    """libjpeg-turbo's DCT scaling (through simplejpeg): the JPEG decoded at 1/2, 1/4 or 1/8
    of its size, the smallest whose sides are all at least ``short_side``. A decoder that
    does a quarter of the work for a photo twice the size the pipeline needs. ValueError
    for anything libjpeg-turbo would only warn about (strict)."""
    import simplejpeg

    array = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=short_side, min_width=short_side)
    return torch.from_numpy(array).permute(2, 0, 1)


def decode(data: bytes, decoder: str, target: int | None, max_pixels: int) -> torch.Tensor | Image.Image:
    """An image's bytes decoded by ``decoder`` (see the module docstring), 8-bit RGB.

    ``scaled``: a JPEG at least twice ``target`` on its short side is decoded at a reduced
    scale (``decode_scaled``); every other image as ``torchvision`` does. ``pil``: PIL for
    all, with its JPEG draft scaling.
    """
    form, mode, short = image_header(data, max_pixels, target)
    if form == "PNG" and not png_intact(data):
        raise ValueError("a PNG that is not whole (a chunk, its CRC or its image data is missing)")
    if decoder == "scaled" and form == "JPEG" and mode in ("RGB", "L") and target and short >= 2 * target:
        try:
            return decode_scaled(data, target)
        except ValueError:  # a variant or a flaw libjpeg-turbo refuses when strict: the others may read it
            pass
    if decoder in ("torchvision", "scaled") and form in TORCHVISION_FORMATS and mode not in SIXTEEN_BIT:
        try:
            return decode_torchvision(data)
        except RuntimeError:  # a variant libjpeg/libpng refuses (e.g. CMYK): PIL may read it
            pass
    return decode_pil(data, target)


class ImageFiles(Dataset):
    """Images listed by path with integer labels; items are (image, label, index)."""

    def __init__(
        self,
        paths: Sequence[str],
        labels: np.ndarray,
        transform: Callable,
        decoder: str = "pil",
        draft_size: int | None = None,
        fallback_size: tuple[int, int] = (256, 256),
        max_pixels: int = MAX_PIXELS,
    ):
        if decoder not in DECODERS:
            raise ValueError(f"decoder '{decoder}': expected one of {', '.join(DECODERS)}")
        self.paths = np.asarray(paths, dtype=object)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.transform = transform
        self.decoder = decoder
        self.draft_size = draft_size
        self.fallback_size = fallback_size
        self.max_pixels = max_pixels
        self.corrupt = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()
        self.normalization: tuple | None = None  # (mean, std) the model applies to these uint8 images
        self.device_transform: tuple[int, int, bool] | None = None  # (short edge, crop, train) for "device"
        self._fill = (128, 128, 128)

    def __len__(self) -> int:
        return len(self.paths)

    def set_fill(self, mean: Sequence[float]) -> None:
        """The colour a corrupt image is replaced with: the normalisation mean, so it becomes zeros."""
        self._fill = tuple(int(round(255 * m)) for m in mean)

    def read(self, i: int) -> bytes:
        """Item ``i``'s encoded bytes (a subclass may read them from elsewhere than a file): a
        regular file within ``file_limit``; OSError for anything else (counted unreadable)."""
        try:
            return read_bytes(str(self.paths[i]), file_limit(self.max_pixels), "image file")
        except NotRegular as exc:
            raise OSError(str(exc)) from None

    def exists(self, i: int) -> bool:
        return is_regular(str(self.paths[i]))

    def load(self, i: int):
        try:
            return decode(self.read(i), self.decoder, self.draft_size, self.max_pixels)
        except (OSError, RuntimeError, ValueError, SyntaxError, Image.DecompressionBombError):
            self.corrupt[i] = True
            return Image.new("RGB", self.fallback_size, self._fill)

    def __getitem__(self, i: int):
        if self.decoder == "device":
            return self.encoded(i), self.labels[i], i
        return self.transform(self.load(i)), self.labels[i], i

    def encoded(self, i: int):
        """Item ``i`` for the device decoder (devicedecode.py): a JPEG's bytes as they are; any
        other image (or an unreadable one, by the corrupt-image policy) decoded here."""
        from noisybench.datasets.devicedecode import Encoded

        resize, size, train = self.device_transform
        try:
            data = self.read(i)
            form, mode, _ = image_header(data, self.max_pixels, resize)
            if form == "JPEG" and mode in ("RGB", "L"):
                return Encoded(resize, size, train, data=np.frombuffer(bytearray(data), dtype=np.uint8))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            pass  # load() below marks it
        image = self.load(i)
        pixels = image if torch.is_tensor(image) else torch.from_numpy(np.array(image)).permute(2, 0, 1)
        return Encoded(resize, size, train, pixels=pixels.contiguous())


def find_missing(paths: Sequence[str], limit: int = 5, sample: int = 512) -> tuple[int, list[str]]:
    """Check up to ``sample`` evenly spread paths; (how many checked, the first ``limit`` missing)."""
    paths = list(paths)
    step = max(1, len(paths) // sample)
    checked = paths[::step][:sample]
    missing = [p for p in checked if not is_regular(p)]
    return len(checked), missing[:limit]


def normalization(config: dict, default: tuple = (IMAGENET_MEAN, IMAGENET_STD)) -> tuple:
    """(mean, std): what the model's weights expect when weights are loaded, else ``default``."""
    model = config["model"]
    if model["pretrained"] or model["pretrained_file"]:
        import timm

        from noisybench.models import register_in_timm

        register_in_timm()
        cfg = timm.models.get_pretrained_cfg(model["name"])
        if cfg is not None:
            return tuple(cfg.mean), tuple(cfg.std)
    return default


SMALL_IMAGE = 64  # data.image_size=auto: below this median short side, images are trained at their own size
SAMPLED = 64  # images whose headers data.image_size=auto reads


def sampled_sides(paths: Sequence[str]) -> list[int]:
    """The short sides of up to SAMPLED evenly spread images, from their headers (unreadable
    ones left out: they are the corrupt-image policy's business)."""
    step = max(1, len(paths) // SAMPLED)
    sides = []
    for path in list(paths)[::step][:SAMPLED]:
        try:
            with open_regular(path) as handle, Image.open(handle) as image:
                sides.append(min(image.size))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, NotRegular):
            continue
    return sides


def auto_image_size(paths: Sequence[str]) -> int:
    """``data.image_size=auto``: the median short side of up to 64 evenly spread images when
    it is under 64 pixels (small images, trained at their own size with the small-image
    augmentation), else 224 (the photo pipeline: short edge 256, crop 224)."""
    sides = sampled_sides(paths)
    median = int(np.median(sides)) if sides else 224
    return max(8, median) if median < SMALL_IMAGE else 224


UPSCALE_LIMIT = 16  # data.image_size may be at most this many times the images' median short side


def check_image_size(size: int, paths: Sequence[str]) -> None:
    """Refuse a ``data.image_size`` far beyond the images' own size (every image would be blown
    up, in memory, to a crop of that size: 100000 pixels is 30 GB an image)."""
    from noisybench.errors import ConfigError

    sides = sampled_sides(paths)
    if sides and size > max(UPSCALE_LIMIT * float(np.median(sides)), 256):
        raise ConfigError(f"data.image_size={size}: more than {UPSCALE_LIMIT}x the training images' median short side "
                          f"({int(np.median(sides))} pixels); choose a size near the images' own, or auto")


def pipeline_short_edge(size: int) -> int:
    """The short edge images are resized to for crops of ``size``: 256 for 224 (the paper's
    ratio) at 96 pixels and more; the size itself below (a square resize)."""
    return round(size * 256 / 224) if size >= 96 else size


def photo_transform(size: int, train: bool):
    """``data.image_size`` 224 gives the paper pipeline (short edge 256, crop 224); sizes
    under 96 resize to a square and use the small-image augmentation."""
    resize = pipeline_short_edge(size)
    if size >= 96:
        return paper_transforms(train, size=size, resize=resize)
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((size, size), antialias=True), small_transforms(train, size)])


def photo_files(config: dict, paths: Sequence[str], labels: np.ndarray, train: bool, files_type: type | None = None,
                **source) -> ImageFiles:
    """ImageFiles (or ``files_type`` with ``source``) of photographs with the configured size
    and decoder, as uint8 tensors (``normalization(config)`` is the model's to apply).

    ``auto`` is resolved from the first split built (the training set) and written back
    into the config, so every split and the record use the size chosen.
    """
    data = config["data"]
    if data["image_size"] == "auto":
        data["image_size"] = auto_image_size(paths)
    elif train and files_type is None:
        check_image_size(data["image_size"], paths)
    size = data["image_size"]
    mean, std = normalization(config)
    resize = pipeline_short_edge(size)
    from noisybench.datasets.devicedecode import resolve_decoder

    decoder = resolve_decoder(data["decoder"], size)
    files = (files_type or ImageFiles)(paths, labels, photo_transform(size, train), decoder, draft_size=resize,
                                       fallback_size=(resize, resize), max_pixels=data["max_pixels"], **source)
    files.device_transform = (resize, size, train)
    files.set_fill(mean)
    files.normalization = (mean, std)
    return files
