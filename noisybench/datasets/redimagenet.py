"""``redimagenet``: Red Mini-ImageNet of Controlled Noisy Web Labels (Jiang et al., ICML 2020).

100 classes of mini-ImageNet; at noise level p a fraction p of each class's training
images is replaced by web images whose label annotators marked wrong ("red" noise). The
release gives split files, not images (the web images are downloaded from their URLs and
the mini-ImageNet ones cut from ILSVRC12), so the image folders follow the public loaders:

  data.root/split/red_noise_nl_<p>   '<image> <label>' per line; p is 0.0, 0.05, 0.1, 0.15,
                                     0.2, 0.3, 0.4, 0.5, 0.6 or 0.8
  data.root/split/clean_validation   5,000 lines 'ILSVRC2012_val_<8 digits>.jpg <label>'
  data.root/all_images/<image>       training images, by the name in the split file
  data.root/validation/<label>/<image> (or val/<label>/ or all_validation/) the validation images
  data.root/mini-imagenet-annotations.json  optional: each web image's is_clean annotation
  data.root/class_name.txt           optional: the 100 class names, one a line (else ids 0-99)

``noise=real:p`` reads ``red_noise_nl_<p>``; ``noise=none`` reads level 0.0 (mini-ImageNet
alone, clean, so synthetic noise may be added to it). mini-ImageNet images (named
``n<wnid digits><8-digit index>.jpg``) carry their true label; a web image (a 16-hex-digit
id) is wrong by construction, or as its annotation says where the annotations file is
present, and its true class is unknown. The clean validation set is the test set.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import UNKNOWN, DataSplits, register_dataset
from noisybench.datasets.files import check_images, numbered_lines, parse_label, require_files, require_root
from noisybench.datasets.images import photo_files
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec, parse_noise

NUM_CLASSES = 100
LEVELS = {0.0: "0.0", 0.05: "0.05", 0.1: "0.1", 0.15: "0.15", 0.2: "0.2", 0.3: "0.3", 0.4: "0.4", 0.5: "0.5",
          0.6: "0.6", 0.8: "0.8"}
VALIDATION_FOLDERS = ("validation", "val", "all_validation")  # <folder>/<label>/<image>, the last <folder>/<image>
MINI_IMAGENET = re.compile(r"n\d{8}")  # a mini-ImageNet image's name starts with its synset
ANNOTATIONS = "mini-imagenet-annotations.json"
LAYOUT = """expected layout of data.root for redimagenet (Controlled Noisy Web Labels, mini-ImageNet):
  split/red_noise_nl_<p>      '<image> <label>' per line (p: 0.0 0.05 0.1 0.15 0.2 0.3 0.4 0.5 0.6 0.8)
  split/clean_validation      'ILSVRC2012_val_00000001.jpg <label>' per line
  all_images/<image>          the training images named as in the split files
  validation/<label>/<image>  the validation images (or val/<label>/ or all_validation/<image>)
  mini-imagenet-annotations.json  optional: is_clean of each web image
  class_name.txt              optional: 100 class names, one a line"""


def level_name(config: dict[str, Any]) -> tuple[str, NoiseSpec]:
    """(the split file's level, the run's noise) for ``noise=real:p`` or ``none`` (level 0.0)."""
    spec = parse_noise(config["noise"])
    if spec.type != "real":
        return LEVELS[0.0], NoiseSpec("none", 0.0)
    if spec.rate not in LEVELS:
        raise DataError(f"redimagenet: noise=real:{spec.rate:g} is not a published level; "
                        f"choose real:P with P one of {', '.join(LEVELS.values())}")
    return LEVELS[spec.rate], spec


def read_split(path: Path) -> tuple[list[str], np.ndarray]:
    names, labels = [], []
    for number, text in numbered_lines(path):
        parts = text.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{number}: expected '<image> <label>', got '{text}'")
        names.append(parts[0])
        labels.append(parse_label(parts[1], NUM_CLASSES, path, number))
    if not names:
        raise DataError(f"{path}: lists no images")
    return names, np.asarray(labels, dtype=np.int64)


def web_image_flags(root: Path, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per training image: 1 label wrong, 0 right. mini-ImageNet images are right; web images
    are wrong, or as ``is_clean`` in the annotations file says where it lists them."""
    annotated: dict[str, int] = {}
    path = root / ANNOTATIONS
    if path.is_file():
        try:
            for entry in json.loads(path.read_text(encoding="utf-8"))["data"]:
                annotated[str(entry[0]["image/id"])] = int(entry[0]["image/class/label/is_clean"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise DataError(f"{path}: not the CNWL annotations file ({type(exc).__name__}: {exc})") from None
    flags = np.zeros(len(names), dtype=np.int8)
    web = [i for i, name in enumerate(names) if not MINI_IMAGENET.match(name)]
    for i in web:
        flags[i] = 1 - annotated.get(Path(names[i]).stem, 0)
    warnings = []
    if web and annotated and not any(Path(names[i]).stem in annotated for i in web):
        warnings.append(f"{ANNOTATIONS} lists none of the {len(web)} web images: they are taken as wrongly labelled")
    return flags, warnings


def validation_paths(root: Path, names: list[str], labels: np.ndarray) -> list[str]:
    """Each validation image's path in the first validation folder present; an ILSVRC12 file
    kept as ``.JPEG`` is found for a ``.jpg`` name."""
    folder = next((root / f for f in VALIDATION_FOLDERS if (root / f).is_dir()), None)
    if folder is None:
        raise DataError(f"redimagenet: no validation images in {root}: none of "
                        f"{', '.join(f + '/' for f in VALIDATION_FOLDERS)}\n{LAYOUT}")
    by_label = folder.name != "all_validation"
    paths = []
    for name, label in zip(names, labels):
        path = folder / str(label) / name if by_label else folder / name
        if not path.is_file() and path.with_suffix(".JPEG").is_file():
            path = path.with_suffix(".JPEG")
        paths.append(str(path))
    return paths


def class_names(root: Path) -> tuple[list[str], list[str]]:
    """(the class names of ``class_name.txt`` where it has 100 lines, else ids; warnings)."""
    path = root / "class_name.txt"
    if not path.is_file():
        return [str(c) for c in range(NUM_CLASSES)], []
    names = [text for _, text in numbered_lines(path)]
    if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
        return [str(c) for c in range(NUM_CLASSES)], [f"{path}: expected {NUM_CLASSES} distinct names, found "
                                                      f"{len(set(names))}; classes are named by id"]
    return names, []


@register_dataset(
    "redimagenet",
    description="Red Mini-ImageNet (CNWL), 100 classes, web-noise level by noise=real:P, 5,000 clean val; data.root",
    defaults={
        "model": {"name": "resnet18_cifar"},
        "epochs": 300,
        "batch_size": 128,
        "optimizer": {"lr": 0.02, "weight_decay": 5e-4},
        "lr_schedule": {"name": "cosine"},
        "data": {"image_size": 32},
    },
)
def build_redimagenet(config: dict[str, Any]) -> DataSplits:
    root = require_root(config["data"]["root"], "data.root", "redimagenet", LAYOUT)
    level, noise = level_name(config)
    split_file = f"split/red_noise_nl_{level}"
    require_files(root, [split_file, "split/clean_validation"], "redimagenet", LAYOUT)
    names, labels = read_split(root / split_file)
    val_names, val_labels = read_split(root / "split/clean_validation")
    flags, warnings = web_image_flags(root, names)
    names_of_classes, more = class_names(root)
    paths = [str(root / "all_images" / name) for name in names]
    val_paths = validation_paths(root, val_names, val_labels)
    check_images(paths, "train", "redimagenet")
    check_images(val_paths, "test", "redimagenet")
    return DataSplits(
        train=photo_files(config, paths, labels, train=True),
        train_eval=photo_files(config, paths, labels, train=False),
        val=None,
        test=photo_files(config, val_paths, val_labels, train=False),
        class_names=names_of_classes,
        train_labels=labels,
        true_labels=np.where(flags == 0, labels, UNKNOWN),
        noise_flags=flags if noise.type == "real" else None,
        noise=noise,
        warnings=warnings + more,
    )
