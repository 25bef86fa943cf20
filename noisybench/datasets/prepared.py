"""Reading a prepared dataset (``data.prepared=DIR``, written by ``noisybench data prepare``).

Layout of DIR:
  manifest.json                 what a run needs besides pixels: class names, labels, what is
                                known of the truth, each split's items (original paths, labels)
  <split>/shard-000000.tar      webdataset tar shards of ``shard_size`` samples (manifest): '<item>.jpg' (or the
                                original file's extension), the image's bytes; '<item>' is the
                                item's 9-digit position in its split
  <split>/shard-000000.idx.npy  (offset, size, CRC-32) of each sample's bytes in the tar

Images are stored resized to the pipeline's short edge (JPEG quality QUALITY); one already no
larger keeps its original bytes. An unreadable image is stored empty and meets the run's
corrupt-image policy as it would have raw. Reading an item is a slice of a memory-mapped
shard (microseconds, any order), so the run's samplers, seeds and resume work as with raw
files, and any process or node that sees DIR reads any item. A split that is a subset of the
training split (Food-101N's verified clean set) is stored as positions in it.

The folder may have been changed by anyone since: the manifest is checked (``Manifest``),
it records each shard's SHA-256 and size and its index file's SHA-256, and the reader
checks each index file's checksum and each tar's size before anything runs (a permuted
index would serve the wrong images) and each item's CRC-32 as it reads it (a changed byte);
``data check`` hashes the tars whole. A mismatch is one line naming the file; ``data
prepare`` run again rewrites the shards that no longer match.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from noisybench.datasets.splits import DataSplits, IndexedSubset
from noisybench.datasets.images import ImageFiles, photo_files, pipeline_short_edge
from noisybench.errors import DataError
from noisybench.inputs import MIB, NotRegular, read_bytes
from noisybench.noise import NoiseSpec

FORMAT = "noisybench-prepared"
VERSION = 2  # 2: checksums of shards and index files, a CRC-32 per item
MANIFEST_LIMIT = 2048 * MIB
MANIFEST = "manifest.json"
SHARD_SIZE = 2000
QUALITY = 95
SPLITS = ("train", "val", "test", "clean")


def shard_paths(folder: Path, split: str, shard: int) -> tuple[Path, Path]:
    return folder / split / f"shard-{shard:06d}.tar", folder / split / f"shard-{shard:06d}.idx.npy"


def shard_count(items: int, shard_size: int) -> int:
    return (items + shard_size - 1) // shard_size


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_sums(folder: Path, split: str, shard: int) -> dict[str, Any]:
    """What the manifest records of a shard: its tar's SHA-256 and size, its index's SHA-256."""
    tar, index = shard_paths(folder, split, shard)
    return {"tar": sha256(tar), "bytes": tar.stat().st_size, "index": sha256(index)}


def read_index(folder: Path, split: str, shard: int, sums: dict[str, Any] | None, items: int) -> np.ndarray:
    """A shard's index, checked: its checksum, its shape, and offsets within its tar."""
    tar, index = shard_paths(folder, split, shard)
    if not tar.is_file() or not os.path.lexists(index):
        raise DataError(f"data.prepared={folder}: {tar.relative_to(folder)} or its index is missing; "
                        "run `noisybench data prepare` again to finish it")
    try:
        data = read_bytes(index, 64 * MIB, "index file")
        table = np.load(io.BytesIO(data), allow_pickle=False)
    except NotRegular as exc:
        raise DataError(str(exc)) from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{index}: not an index this noisybench wrote ({str(exc).splitlines()[0]})") from None
    size = tar.stat().st_size
    if sums is not None and (hashlib.sha256(data).hexdigest() != sums["index"] or size != sums["bytes"]):
        which = index if hashlib.sha256(data).hexdigest() != sums["index"] else tar
        raise DataError(f"{which}: does not match its checksum in {MANIFEST} (changed after `noisybench data "
                        "prepare`); run it again to rewrite the shard")
    if table.dtype != np.int64 or table.shape != (items, 3) or (table[:, :2] < 0).any() or \
            (table[:, 0] + table[:, 1] > size).any():
        raise DataError(f"{index}: not an index of {items} items of {tar.name} (changed after `noisybench data "
                        "prepare`); run it again to rewrite the shard")
    return table


def verify_shards(folder: Path, manifest: dict[str, Any], whole: bool = False) -> None:
    """Check every shard's index against the manifest (and with ``whole``, hash every tar);
    DataError naming the first file that does not match."""
    for split, entry in manifest["splits"].items():
        if entry.get("source"):
            continue
        size = manifest["shard_size"]
        for shard, sums in enumerate(entry["shards"]):
            read_index(folder, split, shard, sums, min(size, entry["count"] - shard * size))
            tar = shard_paths(folder, split, shard)[0]
            if whole and sha256(tar) != sums["tar"]:
                raise DataError(f"{tar}: does not match its checksum in {MANIFEST} (changed after `noisybench data "
                                "prepare`); run it again to rewrite the shard")


class PreparedImages(ImageFiles):
    """ImageFiles whose bytes come from a split's shards; ``paths`` stay the original files'
    (for samples.csv and the data identity)."""

    def __init__(self, *args: Any, folder: Path, split: str, shard_size: int,
                 checksums: list[dict[str, Any]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.folder, self.split, self.shard_size, self.checksums = Path(folder), split, shard_size, checksums
        self._shards: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_shards"] = {}  # each loader worker maps the shards itself
        return state

    def shard(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        if number not in self._shards:
            items = min(self.shard_size, len(self.paths) - number * self.shard_size)
            sums = self.checksums[number] if self.checksums is not None else None
            index = read_index(self.folder, self.split, number, sums, items)
            tar = shard_paths(self.folder, self.split, number)[0]
            self._shards[number] = (np.memmap(tar, dtype=np.uint8, mode="r"), index)
        return self._shards[number]

    def read(self, i: int) -> bytes:
        data, index = self.shard(i // self.shard_size)
        offset, size, crc = index[i % self.shard_size]
        if size == 0:
            raise ValueError(f"{self.paths[i]} was unreadable when prepared")
        item = data[offset : offset + size].tobytes()
        if zlib.crc32(item) != crc:
            tar = shard_paths(self.folder, self.split, i // self.shard_size)[0]
            raise DataError(f"{tar}: item {i % self.shard_size} does not match its checksum (changed after "
                            "`noisybench data prepare`); run it again to rewrite the shard")
        return item

    def exists(self, i: int) -> bool:
        try:
            return int(self.shard(i // self.shard_size)[1][i % self.shard_size][1]) > 0
        except DataError:
            return False


class PreparedSplit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    count: int = Field(ge=0)
    paths: list[str] | None = None
    labels: list[int] | None = None
    source: Literal["train"] | None = None
    positions: list[Annotated[int, Field(ge=0)]] | None = None
    shards: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def items_agree(self) -> "PreparedSplit":
        if self.source is not None:
            if self.positions is None or len(self.positions) != self.count:
                raise ValueError("positions do not number its items")
        elif self.paths is None or self.labels is None or not len(self.paths) == len(self.labels) == self.count:
            raise ValueError(f"{len(self.paths or [])} paths and {len(self.labels or [])} labels for {self.count} "
                             "items")
        return self


class Manifest(BaseModel):
    """What a prepared folder's manifest.json must hold; checked before anything is read by it."""

    model_config = ConfigDict(extra="allow", strict=True)
    format: Literal["noisybench-prepared"]
    dataset: str
    identity: str
    short_edge: int = Field(ge=8, le=16384)
    quality: int
    shard_size: int = Field(ge=1)
    class_names: list[str] = Field(min_length=2)
    channels: Literal[1, 3]
    splits: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")], PreparedSplit]
    extra_tests: list[str] = []
    true_labels: list[int] | None = None
    complete: bool

    @model_validator(mode="after")
    def consistent(self) -> "Manifest":
        if "train" not in self.splits or "test" not in self.splits:
            raise ValueError("no train or test split")
        unknown = set(self.splits) - set(SPLITS) - set(self.extra_tests)
        if unknown:
            raise ValueError(f"splits {', '.join(sorted(unknown))} of no kind this noisybench writes")
        classes = len(self.class_names)
        for name, entry in self.splits.items():
            if any(not 0 <= label < classes for label in entry.labels or []):
                raise ValueError(f"splits.{name}: a label outside 0..{classes - 1}")
            if entry.source and any(p >= self.splits["train"].count for p in entry.positions):
                raise ValueError(f"splits.{name}: a position outside the training split")
            if self.complete and not entry.source and (entry.shards is None or len(entry.shards) != shard_count(
                    entry.count, self.shard_size)):
                raise ValueError(f"splits.{name}: no checksum for each shard")
        if self.true_labels is not None and len(self.true_labels) != self.splits["train"].count:
            raise ValueError("true_labels: not one per training item")
        return self


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise DataError(f"data.prepared={folder}: no {MANIFEST}; write one with `noisybench data prepare`")
    try:
        manifest = json.loads(read_bytes(path, MANIFEST_LIMIT, "manifest"))
    except (UnicodeDecodeError, ValueError, RecursionError, NotRegular) as exc:
        raise DataError(f"{path}: not a prepared dataset's manifest ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a prepared dataset's manifest")
    if manifest.get("version") != VERSION:
        raise DataError(f"{path}: format version {manifest.get('version')}, this noisybench reads {VERSION}; "
                        "prepare the data again")
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise DataError(f"{path}: {where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')} "
                        "(changed after `noisybench data prepare`?)") from None
    return manifest


def optional_array(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.int64)


def prepared_identity(identity: str, manifest: dict[str, Any]) -> str:
    """The raw data's identity with the preparation's short edge and quality: the pixels differ
    from the raw files', so runs on them are another experiment."""
    tag = f"{identity}:prepared:{manifest['short_edge']}:{manifest['quality']}"
    return hashlib.sha256(tag.encode()).hexdigest()[:16]


def load_splits(config: dict[str, Any]) -> tuple[DataSplits, dict[str, Any]]:
    """(the DataSplits the raw files would give (labels, indices, paths, truth), read from
    ``data.prepared``; its manifest). The image size must not need a larger short edge
    than was prepared."""
    data = config["data"]
    folder = Path(data["prepared"]).expanduser()
    manifest = read_manifest(folder)
    if not manifest.get("complete"):
        raise DataError(f"data.prepared={folder}: the preparation was interrupted; run `noisybench data prepare` "
                        "with the same arguments again to finish it")
    if manifest["dataset"] != config["dataset"]:
        raise DataError(f"data.prepared={folder} holds dataset '{manifest['dataset']}', not '{config['dataset']}'")
    if data["image_size"] == "auto":
        data["image_size"] = manifest["image_size"]
    needed = pipeline_short_edge(data["image_size"])
    if needed > manifest["short_edge"]:
        raise DataError(f"data.image_size={data['image_size']} needs images with a short edge of {needed}; "
                        f"{folder} was prepared at {manifest['short_edge']}: prepare again with that image size")
    verify_shards(folder, manifest)
    built: dict[str, Any] = {}

    def split(name: str, train: bool):
        entry = manifest["splits"].get(name)
        if entry is None:
            return None
        if entry.get("source"):  # positions in another split
            base = split(entry["source"], train)
            return IndexedSubset(base, np.asarray(entry["positions"], dtype=np.int64))
        key = (name, train)
        if key not in built:
            built[key] = photo_files(config, entry["paths"], np.asarray(entry["labels"], dtype=np.int64), train,
                                     files_type=PreparedImages, folder=folder, split=name,
                                     shard_size=manifest["shard_size"], checksums=entry["shards"])
        return built[key]

    noise = manifest["noise"]
    splits = DataSplits(
        train=split("train", True),
        train_eval=split("train", False),
        val=split("val", False),
        test=split("test", False),
        clean=split("clean", True),
        class_names=manifest["class_names"],
        train_labels=np.asarray(manifest["splits"]["train"]["labels"], dtype=np.int64),
        true_labels=optional_array(manifest["true_labels"]),
        noise_flags=optional_array(manifest["noise_flags"]),
        trusted=optional_array(manifest["trusted"]),
        channels=manifest["channels"],
        noise=NoiseSpec(noise["type"], float("nan") if noise["rate"] is None else noise["rate"],
                        label_set=noise.get("label_set")),
        warnings=list(manifest["warnings"]),
        extra_tests={name: split(name, False) for name in manifest.get("extra_tests", [])},
    )
    return splits, manifest
