"""The user's own images: a manifest CSV (``csv``) or an ImageFolder tree (``imagefolder``).

Manifest: columns ``path,label`` and optionally ``true_label`` and ``split``
(train/val/test); paths relative to the CSV; labels as class names or as integer ids.
ImageFolder: ``data.root/<class>/<image>``, or ``data.root/{train,val,test}/<class>/<image>``.
Class names come from the data (sorted names, or ids 0..K-1). Splits the data does not
give are carved from the training rows: ``data.test_fraction`` and ``data.val_fraction``,
stratified and seeded by ``data.split_seed``.

Refused, naming file and line: a manifest that is not a regular UTF-8 file of at most
MANIFEST_LIMIT bytes, a column named twice, integer ids far beyond the number of distinct
labels (id 9999999999 would make ten billion class names), and an image listed twice
(with two labels, or in two splits: a test image also trained on scores 1.0). An image
reached twice through links counts as listed twice.
"""

from __future__ import annotations

import csv
import io
import os
import re
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from noisybench.datasets.splits import UNKNOWN, DataSplits, register_dataset, stratified_split
from noisybench.datasets.files import check_images
from noisybench.datasets.images import IMAGE_EXTENSIONS, photo_files
from noisybench.errors import DataError
from noisybench.inputs import MIB, NotRegular, read_bytes

SPLITS = ("train", "val", "test")
CSV_LAYOUT = ("expected a CSV file with a header and columns path,label[,true_label][,split] "
              "(path relative to the CSV; split one of train, val, test)")
USER_DEFAULTS = {"model": {"name": "auto"}, "data": {"image_size": "auto"}}  # the data and recipe decide
MANIFEST_LIMIT = 128 * MIB  # about two million rows of paths and labels
PATH_MAX = 4096  # Linux's


def class_ids(values: list[pd.Series], file: Path) -> tuple[list[str], list[np.ndarray]]:
    """Map label columns to ids: integer ids as they are, names in sorted order. A column
    mixing the two (``3`` beside ``cat``, or ``0.0`` beside ``1``) is refused: which class
    a value means would be a guess."""
    present = pd.concat([v[v.notna()] for v in values]).astype(str).str.strip()
    digits = present.str.fullmatch(r"\d+")
    if digits.any() and not digits.all():
        odd = present[~digits].index[0] if digits.sum() > len(digits) / 2 else present[digits].index[0]
        raise DataError(f"{file}:{int(odd) + 2}: label '{present[odd]}' mixes class names and integer ids in one "
                        "column; use one or the other")
    if digits.all():
        numbers = pd.to_numeric(present, errors="coerce").to_numpy()  # float past int64: still comparable
        bound = max(2, 2 * present.nunique())
        if (numbers >= bound).any():
            at = int(np.flatnonzero(numbers >= bound)[0])
            raise DataError(f"{file}:{int(present.index[at]) + 2}: label id {present.iloc[at]} is far beyond the "
                            f"{present.nunique()} distinct labels; integer ids number the classes 0..K-1 (or use "
                            "class names)")
        ids = [pd.to_numeric(v, errors="coerce").fillna(UNKNOWN).astype(np.int64).to_numpy() for v in values]
        names = [str(i) for i in range(int(max(a.max() for a in ids)) + 1)]
        return names, ids
    names = sorted(present.unique())
    lookup = {name: i for i, name in enumerate(names)}
    ids = [v.map(lambda x: lookup.get(str(x).strip(), UNKNOWN) if pd.notna(x) else UNKNOWN).astype(np.int64).to_numpy()
           for v in values]
    return names, ids


def assemble(
    config: dict[str, Any], name: str, paths: np.ndarray, labels: np.ndarray, true: np.ndarray | None,
    split: np.ndarray, class_names: list[str],
) -> DataSplits:
    """Carve missing splits, check the images and build the DataSplits of a user dataset."""
    data = config["data"]
    if not (split == "test").any():
        train_at = np.flatnonzero(split == "train")
        _, held = stratified_split(labels[train_at], data["test_fraction"], data["split_seed"])
        split[train_at[held]] = "test"
    if not (split == "val").any() and data["val_fraction"] > 0:
        train_at = np.flatnonzero(split == "train")
        _, held = stratified_split(labels[train_at], data["val_fraction"], data["split_seed"])
        split[train_at[held]] = "val"
    at = {s: np.flatnonzero(split == s) for s in SPLITS}
    if not len(at["train"]) or not len(at["test"]):
        raise DataError(f"{name}: need training and test images, found {len(at['train'])} and {len(at['test'])}")
    counts = np.bincount(labels[at["train"]][labels[at["train"]] >= 0], minlength=len(class_names))
    empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise DataError(f"{name}: class(es) {', '.join(empty)} have no training images"
                        f"{' (an empty class folder?)' if name == 'imagefolder' else ''}")
    for s in SPLITS:
        check_images(paths[at[s]], s, name)
    # val and test are scored against the best label known
    best = labels if true is None else np.where(true != UNKNOWN, true, labels)
    train = at["train"]
    return DataSplits(
        train=photo_files(config, paths[train], labels[train], train=True),
        train_eval=photo_files(config, paths[train], labels[train], train=False),
        val=photo_files(config, paths[at["val"]], best[at["val"]], train=False) if len(at["val"]) else None,
        test=photo_files(config, paths[at["test"]], best[at["test"]], train=False),
        class_names=class_names,
        train_labels=labels[train],
        true_labels=None if true is None else true[train],
    )


def read_manifest(file: Path) -> pd.DataFrame:
    """The manifest as strings; an empty, header-only, ragged or non-UTF-8 file, or one with a
    column named twice, fails naming the line."""
    try:
        raw = read_bytes(file, MANIFEST_LIMIT, "manifest")
    except NotRegular as exc:
        raise DataError(str(exc)) from None
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{file}:{number}: not UTF-8 text; save the manifest as UTF-8") from None
    header = next(csv.reader([raw.decode("utf-8-sig").split("\n", 1)[0]]), [])
    named = [h.strip() for h in header]
    twice = sorted({h for h in named if named.count(h) > 1})
    if twice:
        raise DataError(f"{file}:1: column(s) {', '.join(twice)} named twice; which one holds the data would be a guess")
    try:
        table = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=True, skipinitialspace=True,
                            encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{file}: empty; expected a header 'path,label' and one row per image") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if found:
            raise DataError(f"{file}:{found.group(2)}: {found.group(3)} fields where the header has "
                            f"{found.group(1)}") from None
        raise DataError(f"{file}: not a CSV table: {str(exc).splitlines()[0]}") from None
    if table.empty:
        raise DataError(f"{file}: a header and no rows; expected one row per image")
    return table


def refuse_repeats(paths: np.ndarray, labels: np.ndarray, split: np.ndarray, where: Callable[[int], str],
                   also: Callable[[int], str]) -> None:
    """Refuse an image (a resolved path) listed twice: with two labels, in two splits (a test
    image also trained on scores 1.0), or twice over. ``where(i)`` names row i, ``also(j)`` the
    first listing."""
    first: dict[str, int] = {}
    for i, path in enumerate(paths):
        j = first.setdefault(path, i)
        if j == i:
            continue
        why = (f"in the {split[j]} and the {split[i]} split" if split[i] != split[j] else
               "with two labels" if labels[i] != labels[j] else "twice")
        raise DataError(f"{where(i)} is listed {why} ({also(j)}); each image may appear once")


@register_dataset("csv", description="your images listed in a CSV manifest (path,label[,true_label][,split]); data.root=FILE.csv",
                  defaults=USER_DEFAULTS)
def build_csv(config: dict[str, Any]) -> DataSplits:
    if not config["data"]["root"]:
        raise DataError(f"csv: set data.root=FILE.csv; {CSV_LAYOUT}")
    file = Path(config["data"]["root"]).expanduser()
    if not file.is_file():
        raise DataError(f"csv: no such file: {file}; {CSV_LAYOUT}")
    table = read_manifest(file)
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise DataError(f"{file}: missing column(s) {', '.join(sorted(missing))}; found {', '.join(table.columns)}; "
                        f"{CSV_LAYOUT}")
    for column in ("path", "label"):
        empty = table[column].isna()
        if empty.any():
            raise DataError(f"{file}:{int(np.flatnonzero(empty)[0]) + 2}: empty '{column}'")
    split = table["split"].fillna("train").str.strip().to_numpy(dtype=object) if "split" in table else np.full(len(table), "train", dtype=object)
    bad = [i for i, s in enumerate(split) if s not in SPLITS]
    if bad:
        raise DataError(f"{file}:{bad[0] + 2}: split '{split[bad[0]]}' is not one of {', '.join(SPLITS)}")
    columns = [table["label"]] + ([table["true_label"]] if "true_label" in table else [])
    names, ids = class_ids(columns, file)
    labels = ids[0]
    long = [i for i, p in enumerate(table["path"]) if len(p.strip()) > PATH_MAX]
    if long:
        raise DataError(f"{file}:{long[0] + 2}: a path of {len(table['path'][long[0]].strip()):,} characters; a path "
                        f"has at most {PATH_MAX}")
    paths = np.array([os.path.realpath(file.parent / p.strip()) for p in table["path"]], dtype=object)
    shown = [p.strip() for p in table["path"]]
    refuse_repeats(paths, labels, split, lambda i: f"{file}:{i + 2}: {shown[i]}", lambda j: f"also on line {j + 2}")
    return assemble(config, "csv", paths, labels, ids[1] if len(ids) > 1 else None, split, names)


def class_folders(folder: Path) -> list[str]:
    """Class folder names, hidden ones (``.ipynb_checkpoints``, ``.git``) left out."""
    return sorted(e.name for e in folder.iterdir() if e.is_dir() and not e.name.startswith("."))


def visible_image(folder: Path, path: str) -> bool:
    """An image file with no hidden folder or file name on its path below ``folder``."""
    hidden = any(part.startswith(".") for part in Path(path).relative_to(folder).parts)
    return path.lower().endswith(IMAGE_EXTENSIONS) and not hidden


@register_dataset("imagefolder", description="your images in class folders (root/<class>/ or root/{train,val,test}/<class>/); data.root",
                  defaults=USER_DEFAULTS)
def build_imagefolder(config: dict[str, Any]) -> DataSplits:
    if not config["data"]["root"]:
        raise DataError("imagefolder: set data.root=FOLDER holding <class>/<image> or train/<class>/<image>")
    root = Path(config["data"]["root"]).expanduser()
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} is not a folder")
    folders = {s: root / s for s in SPLITS if (root / s).is_dir()} if (root / "train").is_dir() else {"train": root}
    names = sorted(set().union(*(class_folders(f) for f in folders.values())))
    if not names:
        raise DataError(f"imagefolder: no class folders in {root}")
    from torchvision.datasets.folder import make_dataset

    lookup = {name: i for i, name in enumerate(names)}
    paths, labels, split = [], [], []
    for s, folder in folders.items():
        local = class_folders(folder)
        rows = make_dataset(str(folder), {c: lookup[c] for c in local}, is_valid_file=partial(visible_image, folder),
                            allow_empty=True)
        paths += [p for p, _ in rows]
        labels += [c for _, c in rows]
        split += [s] * len(rows)
    labels_array, split_array = np.array(labels, dtype=np.int64), np.array(split, dtype=object)
    real = np.array([os.path.realpath(p) for p in paths], dtype=object)
    shown = [str(Path(p).relative_to(root)) for p in paths]
    refuse_repeats(real, labels_array, split_array, lambda i: f"{root}: {shown[i]}",
                   lambda j: f"the same file as {shown[j]}")
    return assemble(config, "imagefolder", np.array(paths, dtype=object), labels_array, None, split_array, names)
