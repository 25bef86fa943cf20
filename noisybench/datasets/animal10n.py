"""``animal10n``: ANIMAL-10N (Song et al., ICML 2019, SELFIE), real human labelling noise.

The raw-image release: ``data.root/training/`` (50,000) and ``data.root/testing/`` (5,000)
64×64 JPEGs named ``<label>_<id>.jpg``; the label is the integer before the first ``_``.
The labels were given by crowd workers (about 8% wrong by the authors' estimate) and no
true labels are published, so the label-quality metrics are null. There is no validation
set (the papers train on all 50,000 images). Files are read in sorted name order, not in
the arbitrary order a directory listing gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from noisybench.datasets.splits import DataSplits, register_dataset
from noisybench.datasets.files import require_root
from noisybench.datasets.images import photo_files
from noisybench.errors import DataError
from noisybench.noise import NoiseSpec

# The dataset page's table (label: animal). One public loader reports 4 and 5 swapped
# (jaguar 4, cheetah 5); the images were not available to check, so the page is followed.
CLASSES = ["cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster", "guinea pig"]
PAPER_COUNTS = {"training": 50000, "testing": 5000}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = """expected layout of data.root for animal10n (the raw-image version):
  training/<label>_<id>.jpg   50,000 images, 64x64; <label> is the class id 0-9
  testing/<label>_<id>.jpg    5,000 images"""


def read_folder(folder: Path) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of the images in ``folder``, sorted by name; hidden files (``.DS_Store``,
    macOS ``._`` copies) are skipped, a name without a label in 0-9 is refused."""
    paths, labels = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        head, sep, _ = entry.name.partition("_")
        if not sep or not head.isdigit() or not 0 <= int(head) < len(CLASSES):
            raise DataError(f"{entry}: expected a name '<label>_<id>.jpg' with a label 0-{len(CLASSES) - 1}")
        paths.append(str(entry))
        labels.append(int(head))
    return paths, np.asarray(labels, dtype=np.int64)


def read_animal10n(root: Path) -> dict[str, Any]:
    """Paths and labels of both splits, and warnings where the counts are not the paper's."""
    missing = [name for name in PAPER_COUNTS if not (root / name).is_dir()]
    if missing:
        binary = " (this looks like the binary version, data_batch_*.bin: noisybench reads the raw-image version)" \
            if (root / "data_batch_1.bin").is_file() else ""
        raise DataError(f"animal10n: missing in {root}: {', '.join(f'{m}/' for m in missing)}{binary}\n{LAYOUT}")
    found: dict[str, Any] = {"warnings": []}
    for name, expected in PAPER_COUNTS.items():
        paths, labels = read_folder(root / name)
        if not paths:
            raise DataError(f"animal10n: {root / name} holds no '<label>_<id>.jpg' images\n{LAYOUT}")
        if len(paths) != expected:
            found["warnings"].append(f"{name}/ has {len(paths)} images, the dataset {expected:,}: an incomplete copy?")
        found[name] = (paths, labels)
    return found


@register_dataset(
    "animal10n",
    description="ANIMAL-10N, 10 classes, 50,000 noisy train / 5,000 test, 64x64, label in file name; data.root",
    defaults={
        "model": {"name": "resnet18_cifar"},
        "epochs": 100,
        "batch_size": 128,
        "optimizer": {"lr": 0.1, "weight_decay": 5e-4},
        "lr_schedule": {"milestones": [50, 75], "gamma": 0.2},
        "data": {"image_size": 64, "val_fraction": 0.0},
    },
)
def build_animal10n(config: dict[str, Any]) -> DataSplits:
    root = require_root(config["data"]["root"], "data.root", "animal10n", LAYOUT)
    found = read_animal10n(root)
    (train_paths, train_labels), (test_paths, test_labels) = found["training"], found["testing"]
    return DataSplits(
        train=photo_files(config, train_paths, train_labels, train=True),
        train_eval=photo_files(config, train_paths, train_labels, train=False),
        val=None,
        test=photo_files(config, test_paths, test_labels, train=False),
        class_names=list(CLASSES),
        train_labels=train_labels,
        noise=NoiseSpec("real", float("nan")),
        warnings=found["warnings"],
    )
