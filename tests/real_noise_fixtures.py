"""Writers of small trees in the exact layouts of ANIMAL-10N, WebVision 1.0 with ILSVRC12 val,
Red Mini-ImageNet (CNWL) and torchvision's MNIST-style folders, each with its traps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch

from fixtures import write_jpeg, write_lines


def write_animal10n(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> dict:
    """training/ and testing/ of '<label>_<id>.jpg' files (ids of differing widths, so name order
    is not numeric order), plus the traps: a .DS_Store, a macOS '._' copy, a stray text file."""
    expected = {}
    for folder, count in (("training", train_per_class), ("testing", test_per_class)):
        names = []
        for label in range(10):
            for j in range(count):
                name = f"{label}_{(9 + j * 3) * (label + 1)}.jpg"  # e.g. 0_9.jpg, 0_12.jpg, 1_18.jpg
                write_jpeg(root / folder / name, label, size=(16, 16))
                names.append(name)
        (root / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (root / folder / "._0_9.jpg").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble: no image, no label
        (root / folder / "readme.txt").write_text("not an image\n")
        names.sort()
        expected[folder] = (names, np.array([int(n.split("_")[0]) for n in names]))
    return expected


SYNSETS = [f"n{1440764 + i:08d}" for i in range(1000)]


def synset_lines() -> list[str]:
    """1000 'wnid name' lines; class 0 and class 517 share the name 'crane', as ILSVRC12's do."""
    names = [f"concept{i}, synonym" for i in range(1000)]
    names[0] = names[517] = "crane"
    return [f"{wnid} {name}" for wnid, name in zip(SYNSETS, names)]


def write_webvision(root: Path, imagenet: Path | None, per_class: int = 3, listed_classes: int = 3,
                    imagenet_layout: str = "wnid") -> dict:
    """WebVision 1.0 info/ lists, Google images, val_images_256/, and an ILSVRC12 val tree
    (``wnid``: val/<wnid>/, ``index``: DivideMix's val/<c>/, ``flat``: the extracted tar).
    Classes 0..listed_classes-1 are listed; a run with fewer classes must drop the rest."""
    train, val = [], []
    for c in range(listed_classes):
        for j in range(per_class):
            path = f"google/q{c + 1:04d}/{j:06d}.jpg"
            write_jpeg(root / path, c, size=(20, 16))
            train.append(f"{path} {c}")
        for j in range(2):
            name = f"val{c * 2 + j + 1:06d}.jpg"
            write_jpeg(root / "val_images_256" / name, c, size=(20, 16))
            val.append(f"{name} {c}")
    write_lines(root / "info/train_filelist_google.txt", train)
    write_lines(root / "info/val_filelist.txt", val)
    write_lines(root / "info/train_filelist_flickr.txt", ["flickr/q0001/000000.jpg 0"])  # never read
    write_lines(root / "info/synsets.txt", synset_lines())
    if imagenet is not None:
        for c in range(listed_classes):
            for j in range(2):
                name = f"ILSVRC2012_val_{c * 10 + j + 1:08d}.JPEG"
                folder = {"wnid": SYNSETS[c], "index": str(c), "flat": ""}[imagenet_layout]
                write_jpeg(imagenet / "val" / folder / name, c, size=(20, 16))
        if imagenet_layout != "flat":
            (imagenet / "val" / folder_of_class0(imagenet_layout) / ".hidden.JPEG").write_bytes(b"x")
    return {"train": train, "val": val}


def folder_of_class0(layout: str) -> str:
    return SYNSETS[0] if layout == "wnid" else "0"


WEB_IDS = ["5922767e5677aef4", "0a1b2c3d4e5f6789", "ffee00112233aabb"]


def write_redimagenet(root: Path, per_class: int = 3, classes: int = 4, annotations: bool = True,
                      val_folder: str = "validation") -> dict:
    """split/red_noise_nl_0.0 (mini-ImageNet only) and red_noise_nl_0.4 (a web image replaces
    one image in each of three classes), clean_validation named '.jpg' while the ILSVRC12
    files keep '.JPEG', all_images/, and the annotations file marking one web image clean."""
    clean = [(f"n{1532829 + c:08d}{j + 1:08d}.jpg", c) for c in range(classes) for j in range(per_class)]
    noisy = list(clean)
    for k, web in enumerate(WEB_IDS):  # replace the first image of classes 0, 1, 2
        noisy[k * per_class] = (f"{web}.jpg", k)
    for name, label in set(clean) | set(noisy):
        write_jpeg(root / "all_images" / name, label if name.startswith("n") else (label + 1) % classes, size=(12, 12))
    write_lines(root / "split/red_noise_nl_0.0", [f"{n} {c}" for n, c in clean])
    write_lines(root / "split/red_noise_nl_0.4", [f"{n} {c}" for n, c in noisy])
    val = [(f"ILSVRC2012_val_{c * 7 + 1:08d}.jpg", c) for c in range(classes)]
    write_lines(root / "split/clean_validation", [f"{n} {c}" for n, c in val])
    for name, c in val:
        stored = Path(name).with_suffix(".JPEG").name  # the trap: listed as .jpg, kept as .JPEG
        target = root / val_folder / (stored if val_folder == "all_validation" else f"{c}/{stored}")
        write_jpeg(target, c, size=(12, 12))
    if annotations:
        entries = [[{"image/id": web, "image/class/label": k, "image/class/label/is_clean": int(k == 1),
                     "image/uri": f"https://example.org/{web}.jpg"}] for k, web in enumerate(WEB_IDS)]
        (root / "mini-imagenet-annotations.json").write_text(json.dumps({"data": entries}))
    flags = np.array([0 if n.startswith("n") else int(n != f"{WEB_IDS[1]}.jpg") for n, _ in noisy])
    return {"noisy": np.array([c for _, c in noisy]), "names": [n for n, _ in noisy], "flags": flags,
            "val": np.array([c for _, c in val])}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_arrays(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = ((labels[:, None, None].astype(np.int16) * 25) + rng.integers(0, 20, (count, 28, 28))).astype(np.uint8)
    return images, labels


def write_mnist_folder(root: Path, folder: str, train: int = 40, test: int = 20, form: str = "gz") -> dict:
    """torchvision's <root>/<folder>/raw/ IDX files (``gz``: only .gz; ``raw``: extracted and .gz,
    as torchvision leaves them) or the legacy ``processed/training.pt`` / ``test.pt``."""
    found = {}
    for split, count, prefix in (("train", train, "train"), ("test", test, "t10k")):
        images, labels = mnist_arrays(count, seed=count)
        found[split] = (images, labels)
        if form == "legacy":
            (root / folder / "processed").mkdir(parents=True, exist_ok=True)
            name = "training.pt" if split == "train" else "test.pt"
            torch.save((torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))),
                       root / folder / "processed" / name)
            continue
        raw = root / folder / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(array)
            (raw / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(data))
            if form == "raw":
                (raw / f"{prefix}-{kind}-ubyte").write_bytes(data)
    return found
