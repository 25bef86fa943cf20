"""Hostile inputs for every command: what a careless user or an attacker feeds noisybench.

Each case writes its inputs into an empty folder and returns the command line. ``expect``
is ``error`` (exit status 2, one line ``noisybench: error: ...`` matching ``culprit``),
``ok`` (exit status 0, or 1 where a command reports problems, and ``check`` finds nothing
wrong) or ``either``. Files present before the command must be byte-identical after it
(``mutable`` names those an ``ok`` case may rewrite). ``tests/test_hostile.py`` runs the
cases marked ``in_test`` in-process; ``benchmarks/hostile_sweep.py`` runs all of them, each
in a process of its own, and also catches crashes, hangs and memory blow-ups.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from fixtures import write_jpeg

TEMPLATES: dict[str, Path] = {}  # "run": a finished digits run; "prepared": a csv dataset and its prepared copy


@dataclass
class Case:
    name: str
    command: str
    build: Callable[[Path], list[str]]
    expect: str = "error"
    culprit: str = ""
    check: Callable[[Path, str, str], str | None] | None = None
    mutable: tuple[str, ...] = ()
    in_test: bool = False
    setup: Callable[[Path], Callable[[], None]] | None = None


CASES: list[Case] = []


def case(name, command, build, expect="error", culprit="", check=None, mutable=(), in_test=False, setup=None):
    CASES.append(Case(name, command, build, expect, culprit, check, tuple(mutable), in_test, setup))


# -- inputs --------------------------------------------------------------------------------------


def digits(t: Path, *overrides: str, method: str = "ce") -> list[str]:
    return ["run", "--method", method, "--dataset", "digits", "--output", str(t / "run"), "progress=false",
            "epochs=1", *overrides]


def digits_to(output, *overrides: str) -> list[str]:
    return ["run", "--method", "ce", "--dataset", "digits", "--output", str(output), "progress=false", "epochs=1",
            *overrides]


def show(t: Path, *overrides: str, method: str = "ce") -> list[str]:
    return ["config", "--method", method, "--dataset", "digits", *overrides]


def yaml_run(t: Path, text: str | bytes, *overrides: str, method: str = "ce") -> list[str]:
    (t / "c.yaml").write_bytes(text.encode() if isinstance(text, str) else text)
    return [*digits(t, *overrides, method=method), "--config", str(t / "c.yaml")]


SMALL = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=1", "data.num_workers=0",
         "batch_size=8"]


def images(t: Path, count: int = 8) -> list[str]:
    for i in range(count):
        write_jpeg(t / "img" / f"{i}.jpg", i % 2)
    return [f"img/{i}.jpg" for i in range(count)]


def manifest(t: Path, rows: list[str], count: int = 8, header: str = "path,label") -> Path:
    images(t, count)
    (t / "m.csv").write_text("".join(f"{r}\n" for r in [header, *rows]))
    return t / "m.csv"


def csv_args(t: Path, *overrides: str, command: str = "run") -> list[str]:
    head = {"run": ["run", "--method", "ce", "--output", str(t / "run")], "check": ["data", "check", "--decode"],
            "prepare": ["data", "prepare", "--output", str(t / "prep"), "--workers", "1"],
            "bench": ["data", "bench", "--batches", "2"]}[command]
    return [*head, "--dataset", "csv", f"data.root={t / 'm.csv'}", *SMALL, *overrides]


def two_class_rows(count: int = 8, extra: tuple[str, ...] = ()) -> list[str]:
    return [f"img/{i}.jpg,{'ab'[i % 2]}" for i in range(count)] + list(extra)


def with_image(t: Path, name: str, data: bytes | None = None, command: str = "run", make=None,
               extra: tuple[str, ...] = ()) -> list[str]:
    """A manifest of 8 good images and one hostile file ``name`` (class a), for ``command``."""
    rows = two_class_rows(extra=(f"{name},a",))
    manifest(t, rows)
    target = t / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if make is not None:
        make(target)
    elif data is not None:
        target.write_bytes(data)
    return csv_args(t, *extra, command=command)


def photo(fmt: str, size=(40, 30), **kwargs) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **kwargs)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def short_png(width: int = 64, height: int = 64) -> bytes:
    """Valid chunks and CRCs, a whole zlib stream, but a quarter of the rows: libpng's 'Not
    enough image data', which aborts torchvision's decoder (SIGSEGV)."""
    rows = b"".join(b"\0" + bytes([y % 256]) * (3 * width) for y in range(height // 4))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def bad_crc_png() -> bytes:
    data = bytearray(photo("PNG"))
    at = data.find(b"IDAT")
    data[at + 10] ^= 0xFF
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((30, 40, 3), 60 * i, dtype=np.uint8)) for i in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def sparse(target: Path, size: int = 12 * 2**30, head: bytes = b"") -> None:
    with open(target, "wb") as handle:
        handle.write(head or photo("PNG")[:64])
        handle.truncate(size)


def fifo(target: Path) -> None:
    os.mkfifo(target)


def loop(target: Path) -> None:
    os.symlink(target.name, target)


def zero_link(target: Path) -> None:
    os.symlink("/dev/zero", target)


def device(target: Path) -> None:
    """A character device like /dev/null (1, 3), made here; the real one is never touched."""
    os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))


def can_mknod(folder: Path) -> bool:
    try:
        device(folder / ".probe")
    except (PermissionError, OSError):
        return False
    (folder / ".probe").unlink()
    return True


def make_templates(root: Path) -> dict[str, Path]:
    """A finished digits run and a csv dataset with its prepared copy, for the cases to copy."""
    from noisybench.api import make_config, run
    from noisybench.prepare import prepare

    run("ce", "digits", root / "run", ["progress=false", "epochs=1"])
    folder = root / "prepared"
    folder.mkdir()
    manifest(folder, two_class_rows(12), count=12)
    prepare(make_config("ce", "csv", overrides=[f"data.root={folder / 'm.csv'}", *SMALL]), folder / "prep", workers=1)
    TEMPLATES.update(run=root / "run", prepared=folder)
    return TEMPLATES


def copy_template(kind: str, t: Path, into: str) -> Path:
    target = t / into
    shutil.copytree(TEMPLATES[kind], target, symlinks=True)
    return target


def finished(t: Path) -> Path:
    return copy_template("run", t, "run")


def unrecorded(t: Path) -> Path:
    """A run whose checkpoint exists but whose record was never written: --resume loads it."""
    run = finished(t)
    (run / "metrics.json").unlink()
    return run


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    result = change(data)
    path.write_text(json.dumps(data if result is None else result))


def state_edit(change) -> Callable[[Path], list[str]]:
    def build(t):
        run = unrecorded(t)
        edit_json(run / "checkpoint" / "state.json", change)
        (run / "checkpoint.old").exists() and shutil.rmtree(run / "checkpoint.old")
        return ["run", "--output", str(run), "--resume"]
    return build


def replace_file(relative: str, content: bytes, command: str = "resume", kind: str = "run") -> Callable:
    def build(t):
        run = unrecorded(t) if command == "resume" else finished(t)
        (run / relative).write_bytes(content)
        return {"resume": ["run", "--output", str(run), "--resume"],
                "evaluate": ["evaluate", str(run)],
                "predict": ["predict", str(run), "--input", str(run_images(t)), "--output", str(t / "p.csv")],
                "export": ["export", str(run), "--output", str(t / "s.csv")]}[command]
    return build


def run_images(t: Path) -> Path:
    folder = t / "new"
    folder.mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 30 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def predict_args(t: Path, *extra: str, source: Path | None = None) -> list[str]:
    run = finished(t)
    return ["predict", str(run), "--input", str(source or run_images(t)), "--output", str(t / "p.csv"), *extra]


def predict_input(rows: list[str], make: Callable[[Path], None] | None = None, name: str = "x.png"):
    def build(t):
        if make is not None:
            make(t / name)
        (t / "in.csv").write_text("".join(f"{r}\n" for r in ["path", *rows]))
        return predict_args(t, source=t / "in.csv")
    return build


def card_edit(change) -> Callable[[Path], list[str]]:
    def build(t):
        args = predict_args(t)
        edit_json(t / "run" / "model.json", change)
        return args
    return build


def board(t: Path, change=None, text: str | None = None, *extra: str) -> list[str]:
    """A leaderboard folder: one good record, and one changed by ``change`` (or replaced by ``text``)."""
    for seed in (0, 1):
        folder = t / "board" / "digits" / "ce" / f"seed{seed}"
        folder.mkdir(parents=True)
        shutil.copy(TEMPLATES["run"] / "metrics.json", folder / "metrics.json")
        shutil.copy(TEMPLATES["run"] / "config.yaml", folder / "config.yaml")
    bad = t / "board" / "digits" / "ce" / "seed1" / "metrics.json"
    if text is not None:
        bad.write_text(text)
    elif change is not None:
        edit_json(bad, change)
    return ["leaderboard", str(t / "board"), *extra]


def set_key(*path_value):
    *path, value = path_value

    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def drop_key(key):
    return lambda data: data.pop(key)


def prepared(t: Path) -> Path:
    """The prepared template's raw images, manifest and prepared copy, in ``t`` (paths inside
    the prepared manifest point at the template's raw images)."""
    for entry in TEMPLATES["prepared"].iterdir():
        copy = shutil.copytree if entry.is_dir() else shutil.copy
        copy(entry, t / entry.name)
    return t / "prep"


def prepared_args(t: Path, command: str = "run") -> list[str]:
    prep = t / "prep"
    head = {"run": ["run", "--method", "ce", "--output", str(t / "run")], "check": ["data", "check"],
            "bench": ["data", "bench", "--batches", "2"]}[command]
    return [*head, "--dataset", "csv", f"data.prepared={prep}", *SMALL]


def tamper_prepared(change: Callable[[Path], None], command: str = "run") -> Callable[[Path], list[str]]:
    def build(t):
        change(prepared(t))
        return prepared_args(t, command)
    return build


def permute_index(prep: Path) -> None:
    index = prep / "train" / "shard-000000.idx.npy"
    table = np.load(index)
    np.save(index, table[::-1].copy())


def flip_tar_byte(prep: Path) -> None:
    tar = prep / "train" / "shard-000000.tar"
    data = bytearray(tar.read_bytes())
    data[1024] ^= 0xFF
    tar.write_bytes(bytes(data))


def prepared_manifest(change) -> Callable[[Path], None]:
    return lambda prep: edit_json(prep / "manifest.json", change)


def user_folder(t: Path, *names: str) -> Path:
    """A folder of the user's own files (and folders, names ending in /)."""
    folder = t / "mine"
    folder.mkdir()
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
            (folder / name / "keep.txt").write_text("the user's\n")
        else:
            (folder / name).write_text("the user's own file\n")
    return folder


def output_kinds(t: Path, kind: str) -> Path:
    """An existing --output target of ``kind``: device, fifo, folder, socket."""
    target = t / f"out_{kind}"
    if kind == "device":
        device(target)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
        (target / "keep.txt").write_text("mine\n")
    elif kind == "socket":
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
        server.close()
    return target


def broken_plugin(t: Path, error: str = "raise ImportError('no module named torch_scatter')") -> Callable[[], None]:
    """An installed method whose module fails to import: a dist-info and a module on sys.path."""
    import importlib
    import sys

    site = t / "site"
    (site / "broken_method-0.1.dist-info").mkdir(parents=True)
    (site / "broken_method-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-method\n"
                                                                    "Version: 0.1\n")
    (site / "broken_method-0.1.dist-info" / "entry_points.txt").write_text("[noisybench]\nbroken = broken_method\n")
    (site / "broken_method.py").write_text(f'"""A method that cannot be imported."""\n{error}\n')
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()

    def undo():
        sys.path.remove(str(site))
        sys.modules.pop("broken_method", None)
        importlib.invalidate_caches()
    return undo


# -- checks of cases that should succeed --------------------------------------------------------


def record_of(t: Path, folder: str = "run") -> dict:
    return json.loads((t / folder / "metrics.json").read_text())


def corrupt_counted(t: Path, out: str, err: str) -> str | None:
    counts = record_of(t)["data"]["corrupt_images"]
    return None if sum(counts.values()) >= 1 else f"no corrupt image counted: {counts}"


def reported_unreadable(t: Path, out: str, err: str) -> str | None:
    return None if re.search(r"unreadable|corrupt", out + err) else "the unreadable image is not reported"


def predicted_unreadable(t: Path, out: str, err: str) -> str | None:
    import pandas as pd

    table = pd.read_csv(t / "p.csv")
    return None if table["unreadable"].sum() >= 1 else "the unreadable input is not marked"


def table_cells_intact(t: Path, out: str, err: str) -> str | None:
    text = (t / "b.md").read_text() if (t / "b.md").exists() else out
    rows = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
    if rows and len(widths) != 1:
        return f"markdown rows of different widths {widths}"
    if "<script>" in text or "<img" in text:
        return "raw HTML in a cell"
    return None


def board_skipped_one(t: Path, out: str, err: str) -> str | None:
    if "seed1" not in err or "warning" not in err:
        return "the bad record is not named"
    return None if "| ce | 1 |" in out else "the good record is not on the board"


def yaml_value(key: str, expected) -> Callable[[Path, str, str], str | None]:
    def check(t, out, err):
        import yaml

        value = yaml.safe_load(out)
        for part in key.split("."):
            value = value[part]
        return None if value == expected else f"{key} read as {value!r}, written {expected!r}"
    return check


def shard_rewritten(t: Path, out: str, err: str) -> str | None:
    """Shards are reproducible: a re-run over a tampered one must give the template's bytes back."""
    for name in ("shard-000000.tar", "shard-000000.idx.npy"):
        if (t / "prep" / "train" / name).read_bytes() != (TEMPLATES["prepared"] / "prep" / "train" / name).read_bytes():
            return f"train/{name} is still not what data prepare writes"
    return None


def lock_taken(t: Path, out: str, err: str) -> str | None:
    return None if (t / "run" / "metrics.json").is_file() else "the run did not finish"


def leakage_reported(t: Path, out: str, err: str) -> str | None:
    return None if re.search(r"train.*test|test.*train", out + err) else "the shared image is not reported"


def nothing(t: Path, out: str, err: str) -> str | None:
    return None


# -- the cases -------------------------------------------------------------------------------------

CORE_FLOATS = ["optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "lr_schedule.gamma",
               "lr_schedule.warmup_lr", "lr_schedule.min_lr", "model.drop_rate", "data.val_fraction",
               "data.test_fraction", "data.clean_fraction", "finetune.lr"]
for number, key in enumerate(CORE_FLOATS):
    for value in (".inf", "-.inf", ".nan"):
        in_test = value == (".inf", "-.inf", ".nan")[number % 3]
        case(f"{key}={value}", "run", lambda t, k=key, v=value: digits(t, f"{k}={v}"), culprit=re.escape(key),
             in_test=in_test)
METHOD_FLOATS = {"ce": ["label_smoothing"], "smp": ["alpha", "ready_fraction", "max_changed", "threshold_quantile",
                                                    "eta_max", "change_margin"],
                 "lsw": ["weight_lr", "threshold"], "sinet": ["epsilon", "gamma", "alpha", "beta"],
                 "dividemix": ["p_threshold", "temperature", "alpha", "lambda_u"], "elr": ["beta", "lambda"]}
for method, options in METHOD_FLOATS.items():
    for number, option in enumerate(options):
        extra = ["setting=clean"] if method == "lsw" else []
        for value in (".nan", ".inf"):
            key = f"{method}.{option}"
            in_test = value == ".nan" if number % 2 == 0 else value == ".inf"
            case(f"{key}={value}", "run", lambda t, k=key, v=value, m=method, e=extra: digits(t, f"{k}={v}", *e, method=m),
                 culprit=re.escape(key), in_test=in_test)
case("config ce.label_smoothing=nan", "config", lambda t: show(t, "ce.label_smoothing=.nan"),
     culprit="ce.label_smoothing", in_test=True)
case("config optimizer.lr=inf", "config", lambda t: show(t, "optimizer.lr=.inf"), culprit="optimizer.lr", in_test=True)

BOUNDS = [("seed=4294967296", "seed", True), ("seed=100000000000000000000", "seed", False),
          ("data.split_seed=4294967296", "data.split_seed", True), ("threads=0", "threads", False),
          ("threads=100000", "threads", True), ("data.num_workers=100000", "data.num_workers", True),
          ("data.num_workers=5000", "data.num_workers", False),
          ("data.cv_folds=100000", "data.cv_folds", True), ("data.cv_folds=5000", "data.cv_folds", False)]
for override, key, in_test in BOUNDS:
    case(override, "run", lambda t, o=override: digits(t, o), culprit=re.escape(key), in_test=in_test)
HARMLESS = [  # values past any use: refused, or read as "all of them" (a batch of the whole set, every sample)
    ("data.prefetch_factor=1000000000", "prefetch_factor", "ce", ()),
    ("batch_size=1000000000000", "batch_size", "ce", ()), ("eval_batch_size=1000000000000", "eval_batch_size", "ce", ()),
    ("data.epoch_subset=1000000000000000", "data.epoch_subset", "ce", ()),
    ("lr_schedule.warmup_epochs=1000000000000000", "warmup_epochs", "ce", ()),
    ("data.max_pixels=100000000000000000000000000000", "data.max_pixels", "ce", ()),
    ("smp.samples_per_class=1000000000000", "smp.samples_per_class", "smp", ()),
    ("smp.num_prototypes=1000000000", "smp.num_prototypes", "smp", ()),
    ("lsw.clean_batch_size=1000000000000", "lsw.clean_batch_size", "lsw", ("setting=clean",)),
    ("sinet.initial_top_k=1000000000000", "sinet.initial_top_k", "sinet", ())]
for override, key, method, extra in HARMLESS:
    case(override, "run", lambda t, o=override, m=method, e=extra: digits(t, o, *e, method=m), expect="either",
         culprit=re.escape(key), check=nothing, mutable=("run/**",))
def warned(key: str) -> Callable[[Path, str, str], str | None]:
    """The run's record and console carry a warning naming ``key``."""
    def check(t, out, err):
        warnings = record_of(t)["labels"]["warnings"]
        if not any(key in w for w in warnings) or not re.search(rf"warning: .*{re.escape(key)}", out + err):
            return f"no warning naming {key}: {warnings}"
        return None
    return check


for option, value, method, extra, in_test in (
        ("dividemix.warm_up", 1, "dividemix", (), True), ("smp.start_epoch", 2, "smp", (), True),
        ("sinet.start_epoch", 2, "sinet", (), False), ("lsw.start_epoch", 2, "lsw", ("setting=clean",), False)):
    case(f"{option} past the epochs", "run", lambda t, o=option, v=value, m=method, e=extra: digits(
        t, f"{o}={v}", *e, method=m), expect="ok", check=warned(option), mutable=("run/**",), in_test=in_test)
case("image_size 100000 on files", "run",
     lambda t: (manifest(t, two_class_rows()), csv_args(t, "data.image_size=100000"))[-1], culprit="data.image_size",
     in_test=True)
case("image_size 100000 on files (check)", "data check",
     lambda t: (manifest(t, two_class_rows()), csv_args(t, "data.image_size=100000", command="check"))[-1],
     culprit="data.image_size")
case("cv_folds over the samples", "run",
     lambda t: (manifest(t, two_class_rows()), csv_args(t, "data.cv_folds=7", "data.cv_fold=0"))[-1],
     culprit="data.cv_folds", in_test=True)

# -- command-line arguments -------------------------------------------------------------------------
case("bench --batches 0", "data bench", lambda t: ["data", "bench", "--dataset", "digits", "--batches", "0",
                                                   "progress=false"], culprit="--batches", in_test=True)
case("bench --batches -3", "data bench", lambda t: ["data", "bench", "--dataset", "digits", "--batches", "-3",
                                                    "progress=false"], culprit="--batches")
case("prepare --workers 64 on 9 images", "data prepare",
     lambda t: ["data", "prepare", "--dataset", "csv", "--output", str(t / "prep"), "--workers", "64",
      f"data.root={manifest(t, two_class_rows())}", *SMALL], culprit="--workers", in_test=True)
case("prepare --workers 0", "data prepare",
     lambda t: ["data", "prepare", "--dataset", "csv", "--output", str(t / "prep"), "--workers", "0",
                f"data.root={manifest(t, two_class_rows())}", *SMALL], culprit="--workers")
case("prepare --workers -2", "data prepare",
     lambda t: ["data", "prepare", "--dataset", "csv", "--output", str(t / "prep"), "--workers", "-2",
                f"data.root={manifest(t, two_class_rows())}", *SMALL], culprit="--workers", in_test=True)
case("predict --batch-size 0", "predict", lambda t: predict_args(t, "--batch-size", "0"), culprit="--batch-size",
     in_test=True)
case("predict --batch-size -1", "predict", lambda t: predict_args(t, "--batch-size", "-1"), culprit="--batch-size")
case("export --folds -1", "export", lambda t: ["export", str(finished(t)), "--folds", "-1"], culprit="--folds",
     in_test=True)
case("export --folds 1", "export", lambda t: ["export", str(finished(t)), "--folds", "1"], culprit="--folds")
case("export --folds 100000", "export", lambda t: ["export", str(finished(t)), "--folds", "100000"],
     culprit="folds=100000|--folds 100000")
case("compare --seeds ''", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits", "--seeds", "",
                                                 "--output", str(t / "sweep")], culprit="--seeds", in_test=True)
case("compare --seeds ',,'", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits", "--seeds",
                                                   ",,", "--output", str(t / "sweep")], culprit="--seeds")
case("compare --methods ',,'", "compare", lambda t: ["compare", "--methods", ",,", "--dataset", "digits",
                                                     "--output", str(t / "sweep")], culprit="--methods", in_test=True)
case("compare --methods ' '", "compare", lambda t: ["compare", "--methods", " ", "--dataset", "digits",
                                                    "--output", str(t / "sweep")], culprit="--methods")
case("compare --methods ce,ce", "compare", lambda t: ["compare", "--methods", "ce,ce", "--dataset", "digits",
                                                      "--seeds", "0", "--output", str(t / "sweep")],
     culprit="ce.*twice|twice.*ce", in_test=True)
case("compare --seeds 0,0", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits",
                                                  "--seeds", "0,0", "--output", str(t / "sweep")],
     culprit="0.*twice|twice.*0")
case("compare --seeds 2**32", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits",
                                                    "--seeds", "4294967296", "--output", str(t / "sweep")],
     culprit="seed")
case("compare --seeds -1", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits",
                                                 "--seeds", "-1", "--output", str(t / "sweep")], culprit="seed")
case("compare --output a file", "compare", lambda t: ["compare", "--methods", "ce", "--dataset", "digits",
                                                      "--seeds", "0", "--output", str(user_folder(t, "f") / "f"),
                                                      "epochs=1", "progress=false"], culprit="f")
case("run --output ''", "run", lambda t: (user_folder(t, "notes.txt"), os.chdir(t / "mine"),
                                          digits_to(""))[-1],
     culprit="not a noisybench run|output", in_test=True)
case("run --output a user's folder", "run", lambda t: digits_to(str(user_folder(t, "notes.txt"))), culprit="mine", in_test=True)
case("run --output a folder with config.yaml of the user", "run",
     lambda t: digits_to(str(user_folder(t, "config.yaml"))), culprit="mine")
case("run --output a folder with best/ of the user", "run",
     lambda t: digits_to(str(user_folder(t, "best/"))), culprit="mine",
     in_test=True)
case("run --output a folder with best.old/ of the user", "run",
     lambda t: digits_to(str(user_folder(t, "best.old/"))), culprit="mine")
case("run --output a folder with checkpoint.tmp/ of the user", "run",
     lambda t: digits_to(str(user_folder(t, "checkpoint.tmp/"))), culprit="mine")
case("run --output a folder with samples.csv of the user", "run",
     lambda t: digits_to(str(user_folder(t, "samples.csv"))), culprit="mine")
case("run --output a folder with run.log of the user", "run",
     lambda t: digits_to(str(user_folder(t, "run.log"))), culprit="mine")
case("run --resume a user's folder with checkpoint.old/", "run",
     lambda t: ["run", "--output", str(user_folder(t, "checkpoint.old/")), "--resume"], culprit="mine")
case("run --output a fifo", "run", lambda t: digits_to(str(output_kinds(t, "fifo"))), culprit="out_fifo")
case("run --output a device", "run", lambda t: digits_to(str(output_kinds(t, "device"))), culprit="out_device", in_test=True)
case("run --resume over a foreign checkpoint.old/ in a run", "run",
     lambda t: (unrecorded(t), user_folder(t, "x"), shutil.move(str(t / "mine"), str(t / "run" / "checkpoint.old")),
                ["run", "--output", str(t / "run"), "--resume", "epochs=2"])[-1], culprit="checkpoint.old",
     mutable=("run/checkpoint*/*", "run/config.yaml", "run/model.json"))
case("run --resume with a lock file that is a folder", "run",
     lambda t: (unrecorded(t), (t / "run" / "run.lock").mkdir(), ["run", "--output", str(t / "run"), "--resume"])[-1],
     culprit="run.lock")
case("run --resume with a stale lock of garbage", "run",
     lambda t: (unrecorded(t), (t / "run" / "run.lock").write_text("not a pid\n"),
                ["run", "--output", str(t / "run"), "--resume"])[-1], expect="ok", check=lock_taken,
     mutable=("run/*",))

# -- output files -------------------------------------------------------------------------------------
for kind in ("device", "fifo", "folder", "socket"):
    case(f"leaderboard --output {kind}", "leaderboard",
         lambda t, k=kind: [*board(t), "--output", str(output_kinds(t, k))], culprit=f"out_{kind}",
         in_test=kind in ("device", "fifo"))
    case(f"predict --output {kind}", "predict",
         lambda t, k=kind: [*predict_args(t)[:-2], "--output", str(output_kinds(t, k))], culprit=f"out_{kind}",
         in_test=kind == "fifo")
    case(f"export --output {kind}", "export",
         lambda t, k=kind: ["export", str(finished(t)), "--output", str(output_kinds(t, k))], culprit=f"out_{kind}",
         in_test=kind == "device")
    case(f"evaluate --features {kind}", "evaluate",
         lambda t, k=kind: ["evaluate", str(finished(t)), "--features", str(output_kinds(t, k))],
         culprit=f"out_{kind}", in_test=kind == "fifo")
    case(f"leaderboard --plots {kind}", "leaderboard",
         lambda t, k=kind: [*board(t), "--plots", str(output_kinds(t, k))], culprit=f"out_{kind}",
         expect="ok" if kind == "folder" else "error", check=nothing)
case("data prepare --output a device", "data prepare",
     lambda t: ["data", "prepare", "--dataset", "csv", "--output", str(output_kinds(t, "device")), "--workers", "1",
                f"data.root={manifest(t, two_class_rows())}", *SMALL], culprit="out_device")
case("data prepare --output a user's folder", "data prepare",
     lambda t: ["data", "prepare", "--dataset", "csv", "--output", str(user_folder(t, "notes.txt", "train/")),
                "--workers", "1", f"data.root={manifest(t, two_class_rows())}", *SMALL], culprit="mine", in_test=True)
case("export over the run's samples.csv", "export",
     lambda t: ["export", str(finished(t)), "--output", str(t / "run" / "samples.csv")], culprit="samples.csv",
     in_test=True)
case("export over the run's metrics.json", "export",
     lambda t: ["export", str(finished(t)), "--output", str(t / "run" / "metrics.json")], culprit="metrics.json")
case("predict over the run's config.yaml", "predict",
     lambda t: [*predict_args(t)[:-2], "--output", str(t / "run" / "config.yaml")], culprit="config.yaml",
     in_test=True)
case("leaderboard over a run's metrics.json", "leaderboard",
     lambda t: [*board(t), "--output", str(t / "board" / "digits" / "ce" / "seed0" / "metrics.json")],
     culprit="metrics.json", in_test=True)
case("evaluate --features over the run's model.json", "evaluate",
     lambda t: ["evaluate", str(finished(t)), "--features", str(t / "run" / "model.json")], culprit="model.json")
case("export --output '' ", "export", lambda t: ["export", str(finished(t)), "--output", ""], culprit="output")
case("predict --output ''", "predict", lambda t: [*predict_args(t)[:-2], "--output", ""], culprit="output")
case("leaderboard --output into a run with --force", "leaderboard",
     lambda t: [*board(t), "--output", str(t / "board" / "digits" / "ce" / "seed0" / "notes.md")], expect="ok",
     check=nothing)

# -- YAML --------------------------------------------------------------------------------------------
def laughs(depth: int = 9) -> str:
    """A flow sequence whose last item expands to 9**depth items ("billion laughs")."""
    names = [chr(97 + i) for i in range(depth)]
    parts = ["&a [" + ",".join("x" * 9) + "]"] + [f"&{n} [" + ",".join([f"*{p}"] * 9) + "]"
                                                   for p, n in zip(names, names[1:])]
    return "[" + ", ".join(parts) + "]"


case("billion laughs under data.root", "run", lambda t: yaml_run(t, f"data:\n  root: {laughs()}\n"), culprit="root",
     in_test=True)
case("billion laughs under a method option", "run",
     lambda t: yaml_run(t, f"smp:\n  alpha: {laughs()}\n", method="smp"), culprit="smp.alpha")
case("billion laughs under an unknown key", "run", lambda t: yaml_run(t, f"zz: {laughs()}\n"), culprit="zz")
case("billion laughs in an override", "run", lambda t: digits(t, f"data.root={laughs()}"), culprit="data.root")
case("deep list nesting", "run", lambda t: yaml_run(t, "data:\n  root: " + "[" * 50000 + "]" * 50000 + "\n"),
     culprit="c.yaml", in_test=True)
case("deep mapping nesting", "run", lambda t: yaml_run(t, "x: " + "{a: " * 30000 + "1" + "}" * 30000 + "\n"),
     culprit="c.yaml")
case("deep nesting in an override", "run", lambda t: digits(t, "data.root=" + "[" * 30000 + "]" * 30000),
     culprit="data.root", in_test=True)
case("duplicate top key", "run", lambda t: yaml_run(t, "epochs: 1\nseed: 3\nepochs: 50\n"), culprit="c.yaml.*epochs",
     in_test=True)
case("duplicate nested key", "run", lambda t: yaml_run(t, "optimizer:\n  lr: 0.1\n  lr: 5\n"),
     culprit="c.yaml.*lr", in_test=True)
case("duplicate section", "run", lambda t: yaml_run(t, "optimizer:\n  lr: 0.1\noptimizer:\n  momentum: 0.5\n"),
     culprit="c.yaml.*optimizer")
for text, key in (("seed: 010\n", "seed"), ("seed: 1:30\n", "seed"), ("seed: 0b101\n", "seed"),
                  ("seed: 1_000\n", "seed"), ("progress: yes\n", "progress"), ("progress: off\n", "progress"),
                  ("model:\n  pretrained: y\n", "pretrained"), ("noise: no\n", "noise"),
                  ("optimizer:\n  lr: 1_0.5\n", "lr"), ("seed: 190:20:30\n", "seed")):
    case(f"yaml 1.1 {text.strip()}", "run", lambda t, x=text: yaml_run(t, x), culprit=f"c.yaml.*{key}|{key}.*c.yaml",
         in_test=text in ("seed: 010\n", "progress: yes\n", "seed: 1:30\n", "noise: no\n"))
for text, key, value in (("data:\n  root: 2001-12-14\n", "data.root", "2001-12-14"), ("seed: 0o17\n", "seed", 15),
                         ("epochs: 0x1F\n", "epochs", 31)):  # read as written: as YAML 1.2 and most readers do
    case(f"yaml as written {text.strip()}", "config",
         lambda t, x=text: [*show(t), "--config", str((t / "c.yaml", (t / "c.yaml").write_text(x))[0])],
         expect="ok", check=yaml_value(key, value))
for override, key in (("seed=010", "seed"), ("seed=1:30", "seed"), ("progress=yes", "progress"),
                      ("epochs=0b11", "epochs"), ("model.pretrained=on", "model.pretrained")):
    case(f"override {override}", "run", lambda t, o=override: digits(t, o), culprit=re.escape(key),
         in_test=override in ("seed=010", "progress=yes"))
case("yaml python tag", "run", lambda t: yaml_run(t, "seed: !!python/object/apply:os.system ['touch pwned']\n"),
     culprit="c.yaml")
case("yaml binary tag", "run", lambda t: yaml_run(t, "data:\n  root: !!binary aGVsbG8=\n"), culprit="root")
case("yaml set tag", "run", lambda t: yaml_run(t, "report:\n  trackers: !!set {tensorboard}\n"), culprit="trackers")
case("yaml recursive alias", "run", lambda t: yaml_run(t, "data:\n  root: &a [*a]\n"), culprit="c.yaml|root",
     in_test=True)
case("yaml recursive alias in an override", "run", lambda t: digits(t, "data.root=&a [*a]"), culprit="data.root")
case("yaml undefined alias", "run", lambda t: yaml_run(t, "seed: *nowhere\n"), culprit="c.yaml")
case("yaml complex key", "run", lambda t: yaml_run(t, "? [a, b]\n: 1\n"), culprit="c.yaml")
case("yaml integer key", "run", lambda t: yaml_run(t, "1: 2\n"), culprit="1")
case("yaml null key", "run", lambda t: yaml_run(t, "~: 2\n"), culprit="c.yaml|None")
case("yaml utf-16", "run", lambda t: yaml_run(t, "seed: 3\n".encode("utf-16")), culprit="c.yaml")
case("yaml NUL bytes", "run", lambda t: yaml_run(t, b"seed: 3\x00\x00\n"), culprit="c.yaml")
case("yaml tabs", "run", lambda t: yaml_run(t, "optimizer:\n\tlr: 0.1\n"), culprit="c.yaml")
case("yaml a scalar", "run", lambda t: yaml_run(t, "hello\n"), culprit="c.yaml")
case("yaml 100k unknown keys", "run", lambda t: yaml_run(t, "".join(f"k{i}: {i}\n" for i in range(100000))),
     culprit="c.yaml|k0")
case("yaml 64 MiB", "run", lambda t: yaml_run(t, "# " + "x" * (64 * 2**20) + "\nseed: 1\n"), culprit="c.yaml")
case("yaml a fifo", "run", lambda t: (fifo(t / "c.yaml"), [*digits(t), "--config", str(t / "c.yaml")])[-1],
     culprit="c.yaml", in_test=True)
case("yaml /dev/zero", "run", lambda t: (zero_link(t / "c.yaml"), [*digits(t), "--config", str(t / "c.yaml")])[-1],
     culprit="c.yaml", in_test=True)
case("yaml a folder", "run", lambda t: ((t / "c.yaml").mkdir(), [*digits(t), "--config", str(t / "c.yaml")])[-1],
     culprit="c.yaml")
case("yaml a symlink loop", "run", lambda t: (loop(t / "c.yaml"), [*digits(t), "--config", str(t / "c.yaml")])[-1],
     culprit="c.yaml")
case("yaml a merge key", "config", lambda t: [*show(t), "--config", str(
    (t / "c.yaml", (t / "c.yaml").write_text("base: &b {lr: 0.25}\noptimizer:\n  <<: *b\n"))[0])],
     culprit="base")
case("yaml an anchor reused", "config", lambda t: [*show(t), "--config", str(
    (t / "c.yaml", (t / "c.yaml").write_text("seed: &s 7\ndata:\n  split_seed: *s\n"))[0])], expect="ok",
     check=yaml_value("data.split_seed", 7))
case("yaml BOM", "config", lambda t: [*show(t), "--config", str(
    (t / "c.yaml", (t / "c.yaml").write_bytes(b"\xef\xbb\xbfepochs: 3\n"))[0])], expect="ok",
     check=yaml_value("epochs", 3))
case("yaml CRLF", "config", lambda t: [*show(t), "--config", str(
    (t / "c.yaml", (t / "c.yaml").write_bytes(b"epochs: 4\r\noptimizer:\r\n  lr: 0.5\r\n"))[0])], expect="ok",
     check=yaml_value("optimizer.lr", 0.5))
case("override a section with a scalar", "run", lambda t: digits(t, "optimizer=3"), culprit="optimizer")
case("override an empty key", "run", lambda t: digits(t, "=3"), culprit="=3|key")
case("override a dotted nothing", "run", lambda t: digits(t, "optimizer..lr=3"), culprit="optimizer..lr")
case("override a section of nan", "run", lambda t: digits(t, "optimizer={lr: .nan}"), culprit="optimizer.lr")
case("override a method section null", "run", lambda t: digits(t, "smp=null", method="smp"), culprit="smp")
case("override a method option empty", "run", lambda t: digits(t, "smp.alpha=", method="smp"), culprit="smp.alpha")
case("saved config billion laughs (resume)", "run",
     lambda t: (unrecorded(t), (t / "run" / "config.yaml").write_text(
                    (t / "run" / "config.yaml").read_text().replace("root: null", f"root: {laughs()}", 1)),
                ["run", "--output", str(t / "run"), "--resume"])[-1], culprit="config.yaml")
case("saved config nan (evaluate)", "evaluate",
     lambda t: (finished(t), (t / "run" / "config.yaml").write_text((t / "run" / "config.yaml").read_text()
                                                                     .replace("lr: 0.05", "lr: .nan")),
                ["evaluate", str(t / "run")])[-1], culprit="optimizer.lr")

# -- manifests ---------------------------------------------------------------------------------------
case("label id 9999999999", "run", lambda t: (manifest(t, [f"img/{i}.jpg,{i % 2}" for i in range(7)] +
                                                         ["img/7.jpg,9999999999"]), csv_args(t))[-1],
     culprit=r"m.csv:9.*9999999999", in_test=True)
case("label id 10**30", "run", lambda t: (manifest(t, [f"img/{i}.jpg,{i % 2}" for i in range(7)] +
                                                    ["img/7.jpg," + "1" * 30]), csv_args(t))[-1],
     culprit=r"m.csv:9")
case("label id 9999999999 (data check)", "data check",
     lambda t: (manifest(t, [f"img/{i}.jpg,{i % 2}" for i in range(7)] + ["img/7.jpg,9999999999"]),
                csv_args(t, command="check"))[-1], culprit=r"m.csv:9", in_test=True)
case("label ids with a gap of 5000", "run", lambda t: (manifest(t, [f"img/{i}.jpg,{i % 2}" for i in range(7)] +
                                                                 ["img/7.jpg,5000"]), csv_args(t))[-1],
     culprit=r"m.csv:9.*5000")
case("true_label id 9999999999", "run",
     lambda t: (manifest(t, [f"img/{i}.jpg,{i % 2},{i % 2}" for i in range(7)] + ["img/7.jpg,1,9999999999"],
                         header="path,label,true_label"), csv_args(t))[-1], culprit=r"m.csv:9", in_test=True)
case("same path twice, two labels", "run", lambda t: (manifest(t, two_class_rows(extra=("img/0.jpg,b",))),
                                                      csv_args(t))[-1], culprit=r"m.csv:10.*img/0.jpg", in_test=True)
case("same path twice, two labels (data check)", "data check",
     lambda t: (manifest(t, two_class_rows(extra=("img/0.jpg,b",))), csv_args(t, command="check"))[-1],
     culprit=r"m.csv:10.*img/0.jpg")
case("same path twice, one label", "run", lambda t: (manifest(t, two_class_rows(extra=("img/0.jpg,a",))),
                                                     csv_args(t))[-1], culprit=r"m.csv:10.*img/0.jpg")
case("same file by two spellings", "run", lambda t: (manifest(t, two_class_rows(extra=("img/../img/0.jpg,a",))),
                                                     csv_args(t))[-1], culprit=r"m.csv:10")
case("duplicated label column", "run", lambda t: (manifest(t, [f"img/{i}.jpg,a,b" for i in range(8)],
                                                           header="path,label,label"), csv_args(t))[-1],
     culprit=r"m.csv.*label", in_test=True)
case("duplicated path column", "run", lambda t: (manifest(t, [f"img/{i}.jpg,img/0.jpg,{'ab'[i % 2]}"
                                                              for i in range(8)], header="path,path,label"),
                                                 csv_args(t))[-1], culprit=r"m.csv.*path")
case("the same image in train and test", "run",
     lambda t: (manifest(t, [f"img/{i}.jpg,{'ab'[i % 2]},train" for i in range(8)] +
                         [f"img/{i}.jpg,{'ab'[i % 2]},test" for i in range(4)], header="path,label,split"),
                csv_args(t))[-1], culprit=r"m.csv.*img/0.jpg", in_test=True)
case("the same image in train and val (data check)", "data check",
     lambda t: (manifest(t, [f"img/{i}.jpg,{'ab'[i % 2]},train" for i in range(8)] +
                         [f"img/{i}.jpg,{'ab'[i % 2]},val" for i in range(2)] +
                         [f"img/{i}.jpg,{'ab'[i % 2]},test" for i in range(6, 8)], header="path,label,split"),
                csv_args(t, command="check"))[-1], culprit=r"m.csv.*img/0.jpg")
case("the same image in train and test (imagefolder)", "run",
     lambda t: (images(t), [(t / "tree" / s / c).mkdir(parents=True) for s in ("train", "test") for c in "ab"],
                [shutil.copy(t / "img" / f"{i}.jpg", t / "tree" / "train" / "ab"[i % 2] / f"{i}.jpg") for i in range(8)],
                [os.symlink(t / "tree" / "train" / "ab"[i % 2] / f"{i}.jpg", t / "tree" / "test" / "ab"[i % 2] /
                            f"{i}.jpg") for i in range(2)],
                ["run", "--method", "ce", "--dataset", "imagefolder", "--output", str(t / "run"),
                 f"data.root={t / 'tree'}", *SMALL])[-1], culprit=r"0.jpg")
case("manifest with a BOM", "run", lambda t: (manifest(t, two_class_rows()), (t / "m.csv").write_bytes(
    b"\xef\xbb\xbf" + (t / "m.csv").read_bytes()), csv_args(t, "data.val_fraction=0"))[-1], expect="ok",
     check=nothing, mutable=("run/**",))
case("manifest a fifo", "run", lambda t: (fifo(t / "m.csv"), csv_args(t))[-1], culprit="m.csv", in_test=True)
case("manifest /dev/zero", "run", lambda t: (zero_link(t / "m.csv"), csv_args(t))[-1], culprit="m.csv")
case("manifest 200 MiB", "run", lambda t: ((t / "m.csv").write_text("path,label\n" + "x.jpg,a\n" * (25 * 2**20)),
                                           csv_args(t))[-1], culprit="m.csv")
case("manifest a 10 MiB path", "run", lambda t: (manifest(t, two_class_rows(extra=("x" * (10 * 2**20) + ".jpg,a",))),
                                                 csv_args(t))[-1], culprit="m.csv:10")
case("manifest one image per class", "run",
     lambda t: (manifest(t, [f"img/{i}.jpg,c{i}" for i in range(8)]), csv_args(t))[-1], expect="either",
     check=nothing, mutable=("run/**",))
case("manifest 20000 classes", "run",
     lambda t: (manifest(t, [f"img/{i % 8}.jpg,c{i}" for i in range(20000)]), csv_args(t))[-1], culprit="m.csv")
case("manifest a label of nan", "run", lambda t: (manifest(t, two_class_rows(extra=("img/0.jpg,nan",))[1:]),
                                                  csv_args(t))[-1], culprit=r"m.csv:9")
case("manifest split 'TRAIN'", "run", lambda t: (manifest(t, [f"img/{i}.jpg,a,TRAIN" for i in range(8)],
                                                          header="path,label,split"), csv_args(t))[-1],
     culprit=r"m.csv:2.*TRAIN")
case("manifest a path to /dev/zero", "run",
     lambda t: (manifest(t, two_class_rows(extra=("/dev/zero,a",))), csv_args(t))[-1], culprit="/dev/zero")
case("manifest a path to a fifo", "run", lambda t: with_image(t, "img/f.jpg", make=fifo), culprit="f.jpg",
     expect="either", check=corrupt_counted, mutable=("run/**",), in_test=True)
case("manifest a path to a symlink loop", "run", lambda t: with_image(t, "img/l.jpg", make=loop), culprit="l.jpg",
     expect="either", check=corrupt_counted, mutable=("run/**",))
case("manifest a path to a folder", "run", lambda t: with_image(t, "img/d.jpg", make=lambda p: p.mkdir()),
     culprit="d.jpg", expect="either", check=corrupt_counted, mutable=("run/**",))

# -- images ------------------------------------------------------------------------------------------
IMAGE_FILES = {
    "short png": ("img/s.png", short_png(), True),
    "bad crc png": ("img/c.png", bad_crc_png(), False),
    "truncated png": ("img/t.png", photo("PNG")[:300], False),
    "truncated jpeg": ("img/t.jpg", photo("JPEG")[:200], False),
    "empty file": ("img/e.jpg", b"", False),
    "text as jpeg": ("img/x.jpg", b"hello, world\n", False),
    "html as png": ("img/h.png", b"<html><script>alert(1)</script></html>", False),
}
COMMANDS = {"run": (corrupt_counted, ("run/**",)), "check": (reported_unreadable, ()),
            "prepare": (nothing, ("prep/**",)), "bench": (nothing, ())}
for label, (name, data, crashes) in IMAGE_FILES.items():
    for command, (check, mutable) in COMMANDS.items():
        if not crashes and command in ("prepare", "bench"):
            continue
        case(f"{label} ({command})", f"data {command}" if command != "run" else "run",
             lambda t, n=name, d=data, c=command: with_image(t, n, d, command=c), expect="ok", check=check,
             mutable=mutable, in_test=crashes and command in ("run", "check") or label == "truncated jpeg"
             and command == "run")
for command, (check, mutable) in COMMANDS.items():
    case(f"12 GiB sparse png ({command})", f"data {command}" if command != "run" else "run",
         lambda t, c=command: with_image(t, "img/big.png", command=c, make=sparse), expect="ok", check=check,
         mutable=mutable, in_test=command in ("run", "check"))
    case(f"extreme aspect png ({command})", f"data {command}" if command != "run" else "run",
         lambda t, c=command: with_image(t, "img/thin.png", photo("PNG", size=(60000, 1)), command=c,
                                         extra=("data.image_size=224",)), expect="ok",
         check=check, mutable=mutable, in_test=command == "run")
    case(f"animated gif ({command})", f"data {command}" if command != "run" else "run",
         lambda t, c=command: with_image(t, "img/a.gif", animated_gif(), command=c), expect="ok",
         check=nothing, mutable=mutable, in_test=command == "run")
def class_total(name: str, expected: int) -> Callable[[Path, str, str], str | None]:
    """data check's table counts ``expected`` images of class ``name`` over its splits."""
    def check(t, out, err):
        row = next((line.split() for line in out.splitlines() if line.split()[:1] == [name]), None)
        total = sum(int(v) for v in row[1:]) if row else None
        return None if total == expected else f"class {name}: {total} images, expected {expected}"
    return check


case("gif in an image folder is an image", "data check",
     lambda t: ([write_jpeg(t / "tree" / c / f"{i}.jpg", i) for c in "ab" for i in range(4)],
                (t / "tree" / "a" / "z.gif").write_bytes(animated_gif()),
                ["data", "check", "--dataset", "imagefolder", f"data.root={t / 'tree'}", *SMALL])[-1], expect="ok",
     check=class_total("a", 5))
case("predict: a short png", "predict", predict_input([str("x.png")], lambda p: p.write_bytes(short_png())),
     expect="ok", check=predicted_unreadable, in_test=True)
case("predict: a sparse 12 GiB png", "predict", predict_input(["x.png"], sparse), expect="ok",
     check=predicted_unreadable, in_test=True)
case("predict: /dev/zero", "predict", predict_input(["/dev/zero"]), expect="either", check=predicted_unreadable,
     culprit="/dev/zero")
case("predict: a fifo", "predict", predict_input(["x.png"], fifo), expect="either", check=predicted_unreadable,
     culprit="x.png", in_test=True)
case("predict: a symlink loop", "predict", predict_input(["x.png"], loop), expect="either",
     check=predicted_unreadable, culprit="x.png")
case("predict: an extreme aspect png", "predict",
     predict_input(["x.png"], lambda p: p.write_bytes(photo("PNG", size=(60000, 1)))), expect="ok", check=nothing)
case("predict: an empty csv", "predict", lambda t: ((t / "in.csv").write_text(""),
                                                    predict_args(t, source=t / "in.csv"))[-1], culprit="in.csv",
     in_test=True)
case("predict: a binary csv", "predict", lambda t: ((t / "in.csv").write_bytes(bytes(range(256)) * 64),
                                                    predict_args(t, source=t / "in.csv"))[-1], culprit="in.csv")
case("predict: a latin-1 csv", "predict", lambda t: ((t / "in.csv").write_bytes("path,label\ncaf\xe9.png,0\n"
                                                                                 .encode("latin-1")),
                                                     predict_args(t, source=t / "in.csv"))[-1], culprit="in.csv")
case("predict: input a fifo", "predict", lambda t: (fifo(t / "in.csv"), predict_args(t, source=t / "in.csv"))[-1],
     culprit="in.csv")
case("predict: label -1", "predict", lambda t: (run_images(t), (t / "in.csv").write_text("path,label\nnew/0.png,-1\n"),
                                                predict_args(t, source=t / "in.csv"))[-1], culprit=r"in.csv:2")

# -- run folders someone else wrote ------------------------------------------------------------------------
for label, change, in_test in (
        ("epochs_done -5", set_key("progress", "epochs_done", -5), True),
        ("epochs_done 10**9", set_key("progress", "epochs_done", 10**9), False),
        ("epochs_done 'abc'", set_key("progress", "epochs_done", "abc"), True),
        ("epochs_done true", set_key("progress", "epochs_done", True), False),
        ("no progress", drop_key("progress"), True),
        ("history a string", set_key("progress", "history", "abc"), False),
        ("best_val a list", set_key("progress", "best_val", [1, 2]), False),
        ("optimizer a number", set_key("optimizer", 3), False),
        ("a tensor reference to nothing", set_key("optimizer", {"__tensor__": "/nowhere"}), True),
        ("a list", lambda data: [1, 2, 3], False)):
    case(f"state.json: {label}", "run", state_edit(change), culprit="state.json", in_test=in_test)
CORRUPT_FILES = {"truncated": lambda b: b[: len(b) // 2], "a pickle": lambda b: __import__("pickle").dumps({"a": 1}),
                 "empty": lambda b: b"", "a huge header": lambda b: struct.pack("<Q", 2**62) + b"{}"}
for label, corrupt in CORRUPT_FILES.items():
    for command in ("resume", "evaluate", "predict"):
        relative = "checkpoint/model.safetensors" if command != "predict" else "best/model.safetensors"
        case(f"{relative} {label} ({command})", {"resume": "run"}.get(command, command),
             lambda t, r=relative, c=corrupt, m=command: (replace_file(
                 r, c((TEMPLATES["run"] / r).read_bytes()), m)(t)), culprit="model.safetensors",
             in_test=(label, command) in (("truncated", "resume"), ("a pickle", "evaluate"), ("a huge header", "predict")))
case("state.safetensors truncated", "run", lambda t: replace_file(
    "checkpoint/state.safetensors", (TEMPLATES["run"] / "checkpoint/state.safetensors").read_bytes()[:100])(t),
     culprit="state")


def wrong_shape_weights(relative: str, command: str):
    def build(t):
        from safetensors.torch import load_file, save_file

        args = replace_file(relative, b"", command)(t)
        weights = load_file(TEMPLATES["run"] / relative)
        key = next(k for k, v in weights.items() if v.ndim == 2)
        weights[key] = weights[key][:, :1].contiguous()
        save_file(weights, str(t / "run" / relative))
        return args
    return build


case("wrong-shape weights (resume)", "run", wrong_shape_weights("checkpoint/model.safetensors", "resume"),
     culprit="model.safetensors", in_test=True)
case("wrong-shape weights (predict)", "predict", wrong_shape_weights("best/model.safetensors", "predict"),
     culprit="model.safetensors")
case("wrong-shape weights (evaluate)", "evaluate", wrong_shape_weights("checkpoint/model.safetensors", "evaluate"),
     culprit="model.safetensors")
case("rng state edited", "run", lambda t: (unrecorded(t), edit_json(t / "run" / "checkpoint" / "rng_0.json",
                                                                     set_key("python", "x")),
                                           ["run", "--output", str(t / "run"), "--resume"])[-1], culprit="rng_0")
for label, change, in_test in (
        ("num_classes 10**9", set_key("num_classes", 10**9), True), ("num_classes -1", set_key("num_classes", -1), False),
        ("num_classes 'abc'", set_key("num_classes", "abc"), False), ("no class_names", drop_key("class_names"), True),
        ("class_names a string", set_key("class_names", "abc"), False),
        ("image_size 10**6", set_key("image_size", 10**6), True), ("image_size 0", set_key("image_size", 0), False),
        ("channels 7", set_key("channels", 7), False), ("normalization ragged", set_key("normalization", [[1], [2, 3]]),
                                                        False),
        ("networks a path", set_key("networks", ["../../etc/passwd"]), False),
        ("a list", lambda data: [1], False)):
    case(f"model.json: {label}", "predict", card_edit(change), culprit="model.json", in_test=in_test)
case("model.json: method unknown, no further networks", "predict", card_edit(set_key("method", "nope")),
     expect="either", culprit="model.json", check=nothing)  # the method's code is not needed to predict
case("model.json not JSON", "predict", lambda t: (predict_args(t), (t / "run" / "model.json").write_text("{x"))[0],
     culprit="model.json", in_test=True)
case("model.json deeply nested", "predict", lambda t: (predict_args(t), (t / "run" / "model.json").write_text(
    "[" * 100000 + "]" * 100000))[0], culprit="model.json")
case("config.yaml missing (predict)", "predict", lambda t: (predict_args(t), (t / "run" / "config.yaml").unlink())[0],
     culprit="config.yaml")
case("config.yaml missing (evaluate)", "evaluate", lambda t: (finished(t), (t / "run" / "config.yaml").unlink(),
                                                             ["evaluate", str(t / "run")])[-1], culprit="config.yaml")

# -- export --------------------------------------------------------------------------------------------------
for label, content, in_test in (
        ("noisy_label out of range", lambda s: s.replace("\n0,", "\n0,") and re.sub(r"^(\d+),(\d+)", r"\1,99", s, count=2,
                                                                                    flags=re.M), True),
        ("noisy_label negative", lambda s: re.sub(r"^(\d+),(\d+)", r"\1,-1", s, count=2, flags=re.M), True),
        ("noisy_label text", lambda s: re.sub(r"^(\d+),(\d+)", r"\1,cat", s, count=2, flags=re.M), False),
        ("index text", lambda s: re.sub(r"^(\d+),", "x,", s, count=2, flags=re.M), False),
        ("train_loss text", lambda s: s.replace(",", ",", 1) and re.sub(r",([0-9.e-]+)$", ",abc", s, count=2,
                                                                        flags=re.M), False)):
    case(f"samples.csv {label}", "export",
         lambda t, c=content: (finished(t), (t / "run" / "samples.csv").write_text(
             c((t / "run" / "samples.csv").read_text())), ["export", str(t / "run"), "--output",
                                                            str(t / "s.csv")])[-1], culprit="samples.csv",
         in_test=in_test)
case("samples.csv a fifo", "export", lambda t: (finished(t), (t / "run" / "samples.csv").unlink(),
                                                fifo(t / "run" / "samples.csv"),
                                                ["export", str(t / "run"), "--output", str(t / "s.csv")])[-1],
     culprit="samples.csv", in_test=True)
case("eval_samples.csv without columns", "export",
     lambda t: (finished(t), (t / "run" / "eval_samples.csv").write_text("a,b\n1,2\n"),
                ["export", str(t / "run"), "--output", str(t / "s.csv")])[-1], culprit="eval_samples.csv",
     in_test=True)
case("metrics.json class_names a string (export)", "export",
     lambda t: (finished(t), edit_json(t / "run" / "metrics.json", set_key("class_names", "abcdefghij")),
                ["export", str(t / "run"), "--output", str(t / "s.csv")])[-1], culprit="metrics.json")

# -- leaderboards ---------------------------------------------------------------------------------------------
case("method with a pipe", "leaderboard",
     lambda t: board(t, set_key("method", "ce | 99.9 | x")), expect="ok", check=table_cells_intact, in_test=True)
case("method with a script", "leaderboard",
     lambda t: board(t, set_key("method", "<script>alert(1)</script>")), expect="ok", check=table_cells_intact,
     in_test=True)
case("method with an image tag (html)", "leaderboard",
     lambda t: board(t, set_key("method", "<img src=x onerror=alert(1)>"), None, "--format", "html"), expect="ok",
     check=table_cells_intact)
case("method with a newline", "leaderboard", lambda t: board(t, set_key("method", "a\n| fake | row |")), expect="ok",
     check=table_cells_intact)
case("noise type with a pipe", "leaderboard", lambda t: board(t, set_key("noise", "type", "a|b")), expect="ok",
     check=table_cells_intact)
for label, change, in_test in (
        ("no dataset", drop_key("dataset"), True), ("no noise", drop_key("noise"), False),
        ("noise a string", set_key("noise", "x"), True), ("noise rate text", set_key("noise", {"type": "symmetric",
                                                                                              "rate": "abc"}), False),
        ("schema 99", set_key("schema_version", 99), True), ("history a string", set_key("history", "abc"), False),
        ("epoch seconds text", set_key("efficiency", "epoch_seconds", ["a"]), True),
        ("efficiency a list", set_key("efficiency", [1]), False), ("no seed", drop_key("seed"), False),
        ("experiment a list", set_key("experiment", [1, 2]), False),
        ("test accuracy text", set_key("test", "accuracy", "high"), False)):
    case(f"metrics.json {label}", "leaderboard", lambda t, c=change: board(t, c), expect="ok",
         check=board_skipped_one, in_test=in_test)
case("metrics.json deeply nested", "leaderboard", lambda t: board(t, text='{"schema_version": 2, "x": ' + "[" * 100000
                                                                   + "]" * 100000 + "}"), expect="ok",
     check=board_skipped_one, in_test=True)
case("metrics.json a fifo", "leaderboard",
     lambda t: (board(t), (t / "board/digits/ce/seed1/metrics.json").unlink(),
                fifo(t / "board/digits/ce/seed1/metrics.json"), ["leaderboard", str(t / "board")])[-1], expect="ok",
     check=board_skipped_one, in_test=True)
case("metrics.json /dev/zero", "leaderboard",
     lambda t: (board(t), (t / "board/digits/ce/seed1/metrics.json").unlink(),
                zero_link(t / "board/digits/ce/seed1/metrics.json"), ["leaderboard", str(t / "board")])[-1],
     expect="ok", check=board_skipped_one)
case("metrics.json 80 MiB", "leaderboard", lambda t: board(t, text='{"schema_version": 2, "pad": "' + "x" * (80 * 2**20)
                                                            + '"}'), expect="ok", check=board_skipped_one)
case("failed.json malformed", "leaderboard",
     lambda t: (board(t), (t / "board/digits/ce/seed2").mkdir(), (t / "board/digits/ce/seed2/failed.json")
                .write_text("{oops"), ["leaderboard", str(t / "board")])[-1], expect="ok",
     check=lambda t, out, err: None if "seed2" in err else "the bad failed.json is not named", in_test=True)
case("failed.json a fifo", "leaderboard",
     lambda t: (board(t), (t / "board/digits/ce/seed2").mkdir(), fifo(t / "board/digits/ce/seed2/failed.json"),
                ["leaderboard", str(t / "board")])[-1], expect="ok",
     check=lambda t, out, err: None if "seed2" in err else "the fifo is not named")
case("--reference missing", "leaderboard", lambda t: [*board(t), "--reference", str(t / "nope.csv")],
     culprit="nope.csv", in_test=True)
case("--reference malformed", "leaderboard",
     lambda t: ((t / "ref.csv").write_text("a,b\n1,2\n"), [*board(t), "--reference", str(t / "ref.csv")])[-1],
     culprit="ref.csv", in_test=True)
case("--reference binary", "leaderboard",
     lambda t: ((t / "ref.csv").write_bytes(bytes(range(256)) * 16), [*board(t), "--reference", str(t / "ref.csv")])[-1],
     culprit="ref.csv")
case("--reference a fifo", "leaderboard",
     lambda t: (fifo(t / "ref.csv"), [*board(t), "--reference", str(t / "ref.csv")])[-1], culprit="ref.csv")
case("--reference value text", "leaderboard",
     lambda t: ((t / "ref.csv").write_text("method,variant,dataset,setting,noise,backbone,metric,value,source\n"
                                           "ce,,digits,noisy,none,small_cnn,test_accuracy,high,x\n"),
                [*board(t), "--reference", str(t / "ref.csv")])[-1], culprit="ref.csv:2")
case("leaderboard of ''", "leaderboard", lambda t: (user_folder(t, "notes.txt"), os.chdir(t / "mine"),
                                                    ["leaderboard", ""])[-1], culprit="FOLDER: an empty path")

# -- prepared data ----------------------------------------------------------------------------------------------
case("permuted index", "run", tamper_prepared(permute_index), culprit="idx.npy", in_test=True)
case("permuted index (data check)", "data check", tamper_prepared(permute_index, "check"), culprit="idx.npy",
     in_test=True)
case("flipped tar byte", "run", tamper_prepared(flip_tar_byte), culprit="shard-000000.tar", in_test=True)
case("flipped tar byte (data check)", "data check", tamper_prepared(flip_tar_byte, "check"), expect="ok",
     check=lambda t, out, err: None if re.search(r"shard-000000.tar: does not match its checksum", out) else
     "the changed shard is not reported")
case("truncated tar", "run", tamper_prepared(lambda p: (p / "train/shard-000000.tar").write_bytes(
    (p / "train/shard-000000.tar").read_bytes()[:2000])), culprit="shard-000000.tar")
case("index a pickle", "run", tamper_prepared(lambda p: np.save(p / "train/shard-000000.idx.npy",
                                                                np.array([object()], dtype=object),
                                                                allow_pickle=True)), culprit="idx.npy")
case("index 1-D", "run", tamper_prepared(lambda p: np.save(p / "train/shard-000000.idx.npy", np.arange(5))),
     culprit="idx.npy")
case("index with a huge header", "run", tamper_prepared(lambda p: (p / "train/shard-000000.idx.npy").write_bytes(
    b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000000, 2), }" + b" " * 41
    + b"\n")), culprit="idx.npy")
case("index a fifo", "run", tamper_prepared(lambda p: ((p / "train/shard-000000.idx.npy").unlink(),
                                                       fifo(p / "train/shard-000000.idx.npy"))), culprit="idx.npy")
case("prepared manifest shard_size 0", "run", tamper_prepared(prepared_manifest(set_key("shard_size", 0))),
     culprit="manifest.json", in_test=True)
case("prepared manifest shard_size -5", "run", tamper_prepared(prepared_manifest(set_key("shard_size", -5))),
     culprit="manifest.json")
case("prepared manifest labels shorter", "run", tamper_prepared(prepared_manifest(
    lambda m: m["splits"]["train"].update(labels=m["splits"]["train"]["labels"][:-1]))), culprit="manifest.json",
     in_test=True)
case("prepared manifest label out of range", "run", tamper_prepared(prepared_manifest(
    lambda m: m["splits"]["train"]["labels"].__setitem__(0, 99))), culprit="manifest.json")
case("prepared manifest no train split", "run", tamper_prepared(prepared_manifest(lambda m: m["splits"].pop("train"))),
     culprit="manifest.json", in_test=True)
case("prepared manifest class_names empty", "run", tamper_prepared(prepared_manifest(set_key("class_names", []))),
     culprit="manifest.json")
case("prepared manifest a list", "run", tamper_prepared(lambda p: (p / "manifest.json").write_text("[1]")),
     culprit="manifest.json")
case("prepared manifest without checksums", "run", tamper_prepared(prepared_manifest(
    lambda m: [e.pop("sha256", None) for e in m["splits"].values()])), culprit="manifest.json|checksum")
case("prepared manifest a fifo", "run", tamper_prepared(lambda p: ((p / "manifest.json").unlink(),
                                                          fifo(p / "manifest.json"))), culprit="manifest.json")
case("prepare over a tampered shard rewrites it", "data prepare",
     lambda t: (prepared(t), flip_tar_byte(t / "prep"),
                ["data", "prepare", "--dataset", "csv", "--output", str(t / "prep"), "--workers", "1",
                 f"data.root={t / 'm.csv'}", *SMALL])[-1], expect="ok", check=shard_rewritten, mutable=("prep/**",),
     in_test=True)
case("prepare over a permuted index rewrites it", "data prepare",
     lambda t: (prepared(t), permute_index(t / "prep"),
                ["data", "prepare", "--dataset", "csv", "--output", str(t / "prep"), "--workers", "1",
                 f"data.root={t / 'm.csv'}", *SMALL])[-1], expect="ok", check=shard_rewritten, mutable=("prep/**",))
case("data.prepared a file", "run", lambda t: ((t / "p").write_text("x"), [
    "run", "--method", "ce", "--dataset", "csv", "--output", str(t / "run"), f"data.prepared={t / 'p'}", *SMALL])[-1],
     culprit="p")

# -- sweep status ---------------------------------------------------------------------------------------------
def sweep_with(t: Path, name: str, make: Callable[[Path], None]) -> list[str]:
    """A sweep folder of one finished run whose file ``name`` is replaced by ``make``."""
    run = t / "sweep" / "digits" / "ce" / "seed0"
    shutil.copytree(TEMPLATES["run"], run)
    target = t / "sweep" / name if name == "sweep.json" else run / name
    if target.exists():
        target.unlink()
    make(target)
    return ["status", str(t / "sweep")]


for name, make, label in (("run.lock", fifo, "a fifo"), ("job.json", fifo, "a fifo"),
                          ("config.yaml", zero_link, "/dev/zero"),
                          ("sweep.json", lambda p: p.write_text("[" * 100000 + "]" * 100000), "deeply nested")):
    case(f"status: {name} {label}", "status", lambda t, n=name, m=make: sweep_with(t, n, m), expect="ok",
         check=lambda t, out, err: None if "seed0" in out else "the run is not listed", in_test=name == "run.lock")


# -- plugins, misc ----------------------------------------------------------------------------------------------
case("a plugin that fails to import (run)", "run", lambda t: digits(t, method="broken"), culprit="broken",
     setup=broken_plugin, in_test=True)
case("a plugin that fails to import (compare)", "compare",
     lambda t: ["compare", "--methods", "ce,broken", "--dataset", "digits", "--output", str(t / "sweep")],
     culprit="broken", setup=broken_plugin)
case("a plugin with a syntax error", "run", lambda t: digits(t, method="broken"), culprit="broken",
     setup=lambda t: broken_plugin(t, "def (:"), in_test=True)
case("a plugin that fails to import (config)", "config", lambda t: show(t, method="broken"), culprit="broken",
     setup=broken_plugin)
case("methods lists a broken plugin", "methods", lambda t: ["methods"], expect="ok",
     check=lambda t, out, err: None if "broken" in out and "ce" in out else "the list is incomplete",
     setup=broken_plugin)


# -- judging ---------------------------------------------------------------------------------------------------

BIG = 64 * 2**20


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): regular files by content, the rest by kind."""
    found: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            key = str(path.relative_to(folder))
            if stat.S_ISREG(info.st_mode):
                if info.st_size > BIG:
                    found[key] = ("file", info.st_size, info.st_mtime_ns, info.st_ino)
                else:
                    found[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[key] = ("dir",)
            else:
                found[key] = ("special", stat.S_IFMT(info.st_mode), info.st_rdev)
    return found


RUN_LOG = ("run/run.log",)  # a run folder's log records a refused resume too


def lost(before: dict[str, tuple], after: dict[str, tuple], mutable: tuple[str, ...]) -> list[str]:
    return [k for k, v in before.items() if after.get(k) != v and v != ("dir",)
            and not any(fnmatch.fnmatch(k, m) for m in mutable + RUN_LOG)]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]


def judge(item: Case, tmp: Path, code: int, out: str, err: str, before: dict) -> tuple[str, str]:
    """(outcome, detail): clean, handled, traceback, silent, data loss, unclear (crash, hang and
    memory are the sweep's to tell, from the process)."""
    gone = lost(before, snapshot(tmp), item.mutable)
    if gone:
        return "data loss", ", ".join(gone[:3])
    if "Traceback" in err:
        return "traceback", err.strip().splitlines()[-1][:200] if err.strip() else ""
    lines = error_lines(err)
    refused = code == 2 and len(lines) == 1 and lines[0].startswith("noisybench: error: ")
    if item.expect in ("error", "either") and refused:
        if re.search(item.culprit, lines[0]):
            return "clean", lines[0][:200]
        return "unclear", f"does not name /{item.culprit}/: {lines[0][:200]}"
    if item.expect in ("ok", "either") and code in (0, 1):
        problem = item.check(tmp, out, err) if item.check else None
        return ("silent", problem) if problem else ("handled", "")
    if code in (0, 1) and item.expect == "error":
        return "silent", f"exit {code}, expected a refusal naming /{item.culprit}/"
    return "unclear", f"exit {code}: {' | '.join(lines)[:300]}"
