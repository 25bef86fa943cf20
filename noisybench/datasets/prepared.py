"""Reading a prepared dataset (``data.prepared=DIR``, written by ``noisybench data prepare``).

Layout of DIR:
  manifest.json                 what a run needs besides pixels: class names, labels, what is
                                known of the truth, each split's items (original paths, labels)
  <split>/shard-000000.tar      webdataset tar shards of ``shard_size`` samples (manifest): '<item>.jpg' (or the
                                original file's extension), the image's bytes; '<item>' is the
                                item's 9-digit position in its split
  <split>/shard-000000.idx.npy  (offset, size) of each sample's bytes in the tar

Images are stored resized to the pipeline's short edge (JPEG quality QUALITY); one already no
larger keeps its original bytes. An unreadable image is stored empty and meets the run's
corrupt-image policy as it would have raw. Reading an item is a slice of a memory-mapped
shard (microseconds, any order), so the run's samplers, seeds and resume work as with raw
files, and any process or node that sees DIR reads any item. A split that is a subset of the
training split (Food-101N's verified clean set) is stored as positions in it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import DataSplits, IndexedSubset
from noisybench.datasets.images import ImageFiles, photo_files, pipeline_short_edge
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec

FORMAT = "noisybench-prepared"
VERSION = 1
MANIFEST = "manifest.json"
SHARD_SIZE = 2000
QUALITY = 95
SPLITS = ("train", "val", "test", "clean")


def shard_paths(folder: Path, split: str, shard: int) -> tuple[Path, Path]:
    return folder / split / f"shard-{shard:06d}.tar", folder / split / f"shard-{shard:06d}.idx.npy"


def shard_count(items: int, shard_size: int) -> int:
    return (items + shard_size - 1) // shard_size


class PreparedImages(ImageFiles):
    """ImageFiles whose bytes come from a split's shards; ``paths`` stay the original files'
    (for samples.csv and the data identity)."""

    def __init__(self, *args: Any, folder: Path, split: str, shard_size: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.folder, self.split, self.shard_size = Path(folder), split, shard_size
        self._shards: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_shards"] = {}  # each loader worker maps the shards itself
        return state

    def shard(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        if number not in self._shards:
            tar, index = shard_paths(self.folder, self.split, number)
            if not tar.is_file() or not index.is_file():
                raise DataError(f"data.prepared={self.folder}: {tar.relative_to(self.folder)} or its index is missing; "
                                "run `noisybench data prepare` again to finish it")
            self._shards[number] = (np.memmap(tar, dtype=np.uint8, mode="r"), np.load(index))
        return self._shards[number]

    def read(self, i: int) -> bytes:
        data, index = self.shard(i // self.shard_size)
        offset, size = index[i % self.shard_size]
        if size == 0:
            raise ValueError(f"{self.paths[i]} was unreadable when prepared")
        return data[offset : offset + size].tobytes()

    def exists(self, i: int) -> bool:
        try:
            return int(self.shard(i // self.shard_size)[1][i % self.shard_size][1]) > 0
        except DataError:
            return False


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"data.prepared={folder}: no {MANIFEST}; write one with `noisybench data prepare`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a prepared dataset's manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a prepared dataset's manifest")
    if manifest.get("version") != VERSION:
        raise DataError(f"{path}: format version {manifest.get('version')}, this noisybench reads {VERSION}; "
                        "prepare the data again")
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
                                     shard_size=manifest["shard_size"])
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
