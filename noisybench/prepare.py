"""``noisybench data prepare``: write a dataset's splits once, resized, as tar shards.

Decoding a 800×600 JPEG and resizing it costs a loader worker more than the training step
can wait for; a prepared copy at the pipeline's short edge decodes several times faster
(benchmarks/decode_throughput.py). The format and its reading are in
``datasets/prepared.py``. Work is saved shard by shard (each written beside its final name
and renamed when whole), so an interrupted preparation resumes where it stopped; images are
encoded by a pool of spawned processes, in order, so the result does not depend on the pool.
Shards are reproducible, and the finished manifest records their checksums: run again over a
folder whose shards were changed since, it rewrites those that no longer match. The output
folder must be new, empty or a preparation: a folder of other files is refused untouched.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from noisybench import records
from noisybench.datasets import data_identity, file_positions, get_dataset, labels_of
from noisybench.datasets.images import decode, pipeline_short_edge, quiet_torchvision_io
from noisybench.datasets.prepared import (FORMAT, MANIFEST, QUALITY, SHARD_SIZE, VERSION, read_manifest,
                                          shard_count, shard_paths, shard_sums)
from noisybench.errors import ConfigError, DataError

KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "PPM": "ppm"}


def encode(data: bytes, short_edge: int, decoder: str, max_pixels: int, quality: int = QUALITY) -> tuple[bytes, str]:
    """(bytes to store, extension) of one image: its own bytes if its short side is at most
    ``short_edge`` (the run decodes them exactly as the raw file), else decoded as the run
    would, resized as the pipeline does (antialiased, short edge) and encoded as a JPEG.
    An unreadable image gives ``(b"", "bad")``."""
    from torchvision.io import encode_jpeg
    from torchvision.transforms.v2 import functional

    try:
        with Image.open(io.BytesIO(data)) as header:
            form, short = header.format, min(header.size)
        image = decode(data, decoder, short_edge, max_pixels)
    except (OSError, RuntimeError, ValueError, SyntaxError, Image.DecompressionBombError):
        return b"", "bad"
    if short <= short_edge and form in KEPT_FORMATS:
        return data, KEPT_FORMATS[form]
    tensor = image if torch.is_tensor(image) else functional.pil_to_tensor(image)
    resized = functional.resize(tensor.contiguous(), short_edge, antialias=True)
    with quiet_torchvision_io():
        return encode_jpeg(resized, quality=quality).numpy().tobytes(), "jpg"


_job: dict[str, Any] = {}


def _start_worker(files: Any, short_edge: int, decoder: str, max_pixels: int) -> None:
    torch.set_num_threads(1)  # one image per process at a time: the processes are the parallelism
    _job.update(files=files, short_edge=short_edge, decoder=decoder, max_pixels=max_pixels)


def _encode_position(position: int) -> tuple[bytes, str]:
    files = _job["files"]
    try:
        data = files.read(position)
    except OSError:
        return b"", "bad"
    return encode(data, _job["short_edge"], _job["decoder"], _job["max_pixels"])


@contextmanager
def encoder_pool(workers: int, job: tuple) -> Iterator[Callable[[list[int]], Iterable[tuple[bytes, str]]]]:
    """``encode_all(positions)``: encoded images in order, by ``workers`` processes (spawned:
    a fork of a process that runs threads, as torch and tqdm do, can deadlock), or here
    for one worker."""
    if workers <= 1:
        _job.update(zip(("files", "short_edge", "decoder", "max_pixels"), job))
        yield lambda positions: map(_encode_position, positions)
        return
    with multiprocessing.get_context("spawn").Pool(workers, _start_worker, job) as pool:
        yield lambda positions: pool.imap(_encode_position, positions, chunksize=16)


def write_shard(tar: Path, index: Path, encoded: list[tuple[bytes, str]], first: int) -> None:
    """One shard, whole or not at all: tar and index are written under temporary names and
    renamed, the tar last (a shard counts as done when its tar exists)."""
    import tarfile

    try:
        import webdataset
    except ImportError:
        raise ConfigError("data prepare writes webdataset shards: pip install 'noisybench[prepared]' "
                          "(reading them needs nothing more)") from None

    tar.parent.mkdir(parents=True, exist_ok=True)
    part = tar.with_name(tar.name + ".part")
    with webdataset.TarWriter(str(part), mtime=0) as writer:  # no clock in the bytes: shards are reproducible
        for offset, (data, extension) in enumerate(encoded):
            writer.write({"__key__": f"{first + offset:09d}", extension: data})
    with tarfile.open(part) as archive:  # where each sample's bytes lie, for reading by slicing; their CRC-32
        table = np.array([[m.offset_data, m.size, zlib.crc32(data)] for m, (data, _) in
                          zip(archive.getmembers(), encoded)], dtype=np.int64).reshape(-1, 3)
    if len(table) != len(encoded):
        raise DataError(f"{part}: wrote {len(encoded)} samples, the tar lists {len(table)}")
    with records.atomic_path(index) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, table)
    os.replace(part, tar)


def split_entries(splits: Any) -> dict[str, dict[str, Any]]:
    """Per split: its files, positions in them, labels and paths; or, for a subset of the
    training split's files (same images), its positions there."""
    entries: dict[str, dict[str, Any]] = {}
    train_at: dict[str, int] | None = None
    for name, dataset in splits.named_splits().items():  # SPLITS, then further test sets (webvision)
        found = file_positions(dataset)
        if found is None:
            raise ConfigError(f"dataset split '{name}' is held in memory: there are no image files to prepare")
        files, positions = found
        paths = [str(p) for p in files.paths[positions]]
        labels = [int(v) for v in labels_of(dataset)]
        if train_at is not None and all(p in train_at for p in paths):
            at = [train_at[p] for p in paths]
            if labels == [entries["train"]["labels"][i] for i in at]:
                entries[name] = {"source": "train", "positions": at, "count": len(at)}
                continue
        entries[name] = {"files": files, "positions": positions, "paths": paths, "labels": labels, "count": len(paths)}
        if name == "train":
            train_at = {p: i for i, p in enumerate(paths)}
    return entries


def plain(values: Any) -> Any:
    return None if values is None else [int(v) for v in values]


def prepare(config: dict[str, Any], output: str | Path, workers: int | None = None,
            shard_size: int = SHARD_SIZE) -> dict[str, Any]:
    """Write (or finish writing) ``config``'s dataset into ``output``; returns the manifest."""
    output = Path(output).expanduser()
    if config["data"]["prepared"]:
        raise ConfigError("data.prepared is what `data prepare` writes; name the raw data (data.root ...) instead")
    name = config["dataset"]
    splits = get_dataset(name).build(config)
    entries = split_entries(splits)
    short_edge = pipeline_short_edge(config["data"]["image_size"])
    noise = splits.noise
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "dataset": name, "identity": data_identity(name, splits),
        "short_edge": short_edge, "quality": QUALITY, "shard_size": shard_size, "image_size": config["data"]["image_size"],
        "decoder": config["data"]["decoder"], "class_names": list(splits.class_names), "channels": splits.channels,
        "noise": {"type": noise.type, "rate": None if noise.rate != noise.rate else noise.rate,
                  "label_set": noise.label_set},
        "warnings": list(splits.warnings), "true_labels": plain(splits.true_labels),
        "extra_tests": list(splits.extra_tests),
        "noise_flags": plain(splits.noise_flags), "trusted": plain(splits.trusted),
        "splits": {split: {k: v for k, v in entry.items() if k not in ("files", "positions")}
                   | ({"positions": entry["positions"]} if "source" in entry else {})
                   for split, entry in entries.items()},
        "complete": False,
    }
    before = previous_preparation(output)
    for key in ("dataset", "identity", "short_edge", "quality", "decoder", "shard_size"):
        if before is not None and before.get(key) != manifest[key]:
            raise ConfigError(f"{output} holds another preparation ({key} {before.get(key)!r}, now "
                              f"{manifest[key]!r}); choose another --output")
    total = sum(e["count"] for e in entries.values() if "files" in e)
    if workers is not None and workers > max(1, total):
        raise ConfigError(f"--workers {workers}: more processes than the {total} images to prepare")
    if before is not None:
        discard_changed_shards(output, before)
    records.write_json(output / MANIFEST, manifest)
    data = config["data"]
    with tqdm(total=total, desc=f"preparing {name}", unit="img", disable=None if config["progress"] else True) as bar:
        for split, entry in entries.items():
            if "files" not in entry:
                continue
            files, positions = entry["files"], entry["positions"]
            pending = [s for s in range(shard_count(len(positions), shard_size))
                       if not shard_paths(output, split, s)[0].is_file()]
            bar.update(len(positions) - sum(len(positions[s * shard_size:(s + 1) * shard_size]) for s in pending))
            if not pending:
                continue
            job = (files, short_edge, data["decoder"], data["max_pixels"])
            with encoder_pool(workers or min(os.cpu_count() or 1, len(positions)), job) as encode_all:
                for shard in pending:
                    chunk = [int(p) for p in positions[shard * shard_size:(shard + 1) * shard_size]]
                    encoded = []
                    for item in encode_all(chunk):
                        encoded.append(item)
                        bar.update(1)
                    write_shard(*shard_paths(output, split, shard), encoded, shard * shard_size)
    for split, entry in manifest["splits"].items():
        if "source" not in entry:
            entry["shards"] = [shard_sums(output, split, s) for s in range(shard_count(entry["count"], shard_size))]
    manifest["complete"] = True
    manifest["unreadable"] = unreadable_counts(output, manifest)
    records.write_json(output / MANIFEST, manifest)
    return manifest


def previous_preparation(output: Path) -> dict[str, Any] | None:
    """The manifest of a preparation already in ``output``; None for a new or empty folder;
    a folder of other files, or another format's preparation, is refused untouched."""
    if not output.exists() and not output.is_symlink():
        return None
    if not output.is_dir():
        raise ConfigError(f"--output {output}: not a folder")
    if (output / MANIFEST).exists() or (output / MANIFEST).is_symlink():
        try:
            return read_manifest(output)
        except DataError as exc:
            if "format version" in str(exc) or "changed after" in str(exc):
                raise ConfigError(f"{output} holds a preparation this noisybench cannot finish ({exc}); choose "
                                  "another --output") from None
            raise
    if any(output.iterdir()):
        raise ConfigError(f"--output {output} holds files that are not a prepared dataset (no {MANIFEST}); nothing "
                          "in it was touched: choose a new or empty folder")
    return None


def discard_changed_shards(output: Path, before: dict[str, Any]) -> None:
    """Remove the shards that no longer match the checksums the finished preparation recorded
    (they are then written again); shards of an unfinished one are trusted as written."""
    for split, entry in before["splits"].items():
        for shard, sums in enumerate(entry.get("shards") or []):
            tar, index = shard_paths(output, split, shard)
            if tar.is_file() and index.is_file() and shard_sums(output, split, shard) == sums:
                continue
            for path in (tar, index):
                if path.is_file():
                    path.unlink()


def unreadable_counts(output: Path, manifest: dict[str, Any]) -> dict[str, int]:
    """Per written split, how many images were stored empty (unreadable)."""
    counts = {}
    for split, entry in manifest["splits"].items():
        if "source" in entry:
            continue
        sizes = [np.load(shard_paths(output, split, s)[1])[:, 1]
                 for s in range(shard_count(entry["count"], manifest["shard_size"]))]
        counts[split] = int(sum((s == 0).sum() for s in sizes))
    return counts


def summary(manifest: dict[str, Any], output: Path) -> str:
    counts = ", ".join(f"{split} {entry['count']}" + (f" (in {entry['source']})" if entry.get("source") else "")
                       for split, entry in manifest["splits"].items())
    bad = {k: v for k, v in manifest.get("unreadable", {}).items() if v}
    size = sum(f.stat().st_size for f in output.rglob("*.tar"))
    line = (f"prepared {manifest['dataset']} in {output}: {counts}; short edge {manifest['short_edge']}, "
            f"{size / 2**20:.1f} MiB; train with data.prepared={output}")
    if bad:
        line += "\nunreadable images stored empty (the run replaces them): " + ", ".join(f"{k} {v}" for k, v in bad.items())
    return line

