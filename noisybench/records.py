"""Run records on disk, each written atomically (temp file, then rename).

Writing never replaces what is not a regular file (a device node, FIFO, socket or folder:
``atomic_path`` refuses it; a link to a file writes the file), and a folder is removed only
if noisybench wrote it (``remove_own_dir``). Records are read as if anyone wrote them:
``read_record`` reads only a regular file of at most RECORD_LIMIT bytes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

import noisybench
from noisybench.errors import NoisybenchError
from noisybench.inputs import MIB, NotRegular, kind, read_text

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.csv"
EVAL_SAMPLES_FILE = "eval_samples.csv"  # val and test samples scored by the final model
HELDOUT_FILE = "heldout.csv"  # data.cv_folds: the held-out fold scored by the final model
CONFUSION_FILE = "confusion_matrix.csv"
PER_CLASS_FILE = "label_accuracy_per_class.csv"
WEIGHT_PLOT_FILE = "weight_histograms.png"
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"  # model weights of the best val epoch (model.safetensors, best.json)
MODEL_CARD = "model.json"  # what predict needs to rebuild the model without the training data
UMASK = os.umask(0o022)  # read once: the only way to read the umask is to set it
os.umask(UMASK)
RECORD_LIMIT = 64 * MIB  # a metrics.json of a long run is a few hundred KiB


def writable_target(path: Path) -> Path:
    """The file a write to ``path`` replaces: ``path``, or the file a link points to; refuses
    (NoisybenchError naming it) anything that exists and is not a regular file."""
    if path.is_symlink():
        path = path.resolve()
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(mode):
        raise NoisybenchError(f"{path}: {kind(mode)}, not a regular file; noisybench writes only new or regular files")
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds
    (and only a new or regular file: ``writable_target``)."""
    path = writable_target(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp's 0600 would make shared records private
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=index)


def owned_dir(folder: Path) -> bool:
    """Whether ``folder`` is one noisybench wrote and may remove: a real folder (not a link)
    of regular ``*.safetensors`` and ``*.json`` files only."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return all(e.is_file(follow_symlinks=False) and e.name.endswith((".safetensors", ".json"))
                   for e in os.scandir(folder))
    except OSError:
        return False


def remove_own_dir(folder: Path) -> None:
    """Remove ``folder`` if noisybench wrote it (``owned_dir``); refuse naming it otherwise."""
    if not os.path.lexists(folder):
        return
    if not owned_dir(folder):
        raise NoisybenchError(f"{folder}: not a folder noisybench wrote (it holds other files, or is a link); "
                              "nothing was removed: move it away and resume")
    shutil.rmtree(folder)


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``; the old ``dst`` is kept as ``dst.old`` until the move is
    done. Only folders noisybench wrote are renamed or removed (``remove_own_dir``)."""
    old = dst.with_name(dst.name + ".old")
    remove_own_dir(old)
    if os.path.lexists(dst):
        if not owned_dir(dst):
            remove_own_dir(dst)  # refuses, naming it
        dst.rename(old)
    src.rename(dst)
    remove_own_dir(old)


def latest_checkpoint(output: Path) -> Path | None:
    """The checkpoint folder, or its predecessor if a crash struck between the two renames."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        if (output / name).is_dir():
            return output / name
    return None


def read_record(path: Path) -> dict[str, Any] | None:
    """A metrics.json as a dict; None if it is absent or not a readable record (a run killed
    while it was written by something else, a truncated copy)."""
    try:
        record = json.loads(read_text(path, RECORD_LIMIT, "run record"))
    except (OSError, ValueError, RecursionError, NotRegular):
        return None
    return record if isinstance(record, dict) and "schema_version" in record else None


def saved_epochs(checkpoint: Path) -> int:
    """How many epochs a checkpoint folder holds (0 if it cannot tell)."""
    try:
        return int(json.loads((checkpoint / "state.json").read_text())["progress"]["epochs_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def confusion_frame(matrix: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(matrix, index=class_names, columns=class_names)
    frame.index.name = "true\\predicted"
    return frame


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The commit of the noisybench source tree, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(noisybench.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(accelerator: Any) -> dict[str, Any]:
    import torch  # here, not at the top: reading records (leaderboard, export) needs no torch

    device = accelerator.device
    return {
        "noisybench": noisybench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{pkg: _package_version(pkg) for pkg in ("torchvision", "timm", "accelerate", "pluggy")},
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "git_revision": git_revision(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # threads.py: PASSIVE unless the user chose
        "torch_threads": torch.get_num_threads(),
    }
