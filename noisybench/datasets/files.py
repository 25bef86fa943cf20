"""Reading the text files that describe a dataset, with errors that name file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from noisybench.errors import DataError


def require_root(root: str | None, key: str, dataset: str, layout: str) -> Path:
    """The folder in config key ``key``; fails naming the key and the expected layout."""
    if not root:
        raise DataError(f"{dataset}: set {key}=PATH to the dataset folder\n{layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{dataset}: {key}={root} is not a folder\n{layout}")
    return path


def require_files(root: Path, names: list[str], dataset: str, layout: str) -> None:
    """Fail at once, naming every missing file, not just the first."""
    missing = [name for name in names if not (root / name).is_file()]
    if missing:
        raise DataError(f"{dataset}: missing in {root}: {', '.join(missing)}\n{layout}")


def numbered_lines(path: Path, skip_header: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of each non-blank line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if skip_header and number == 1:
                continue
            text = line.strip()
            if text:
                yield number, text


def parse_label(text: str, num_classes: int, path: Path, number: int) -> int:
    try:
        label = int(text)
    except ValueError:
        raise DataError(f"{path}:{number}: label '{text}' is not an integer") from None
    if not 0 <= label < num_classes:
        raise DataError(f"{path}:{number}: label {label} is out of range 0..{num_classes - 1}")
    return label


def check_images(paths, split: str, dataset: str, sample: int = 512) -> None:
    """Fail if any of an evenly spread sample of a split's images is missing, naming the first few."""
    from noisybench.datasets.images import find_missing

    checked, missing = find_missing(paths, sample=sample)
    if missing:
        shown = ", ".join(p if len(p) <= 300 else p[:300] + "..." for p in missing)
        raise DataError(f"{dataset}: images of the {split} split are missing (checked {checked}), first ones: {shown}")
