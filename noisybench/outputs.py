"""Where noisybench may write: output files it may replace, and run folders it owns.

Like git, rsync or initdb, noisybench never deletes or overwrites what it did not create:

- An ``--output FILE`` (predict, leaderboard, export, evaluate's features, plots) that exists
  must be a regular file: an atomic replace of a device node, FIFO or socket would swap
  it for a file (as root, ``--output /dev/null`` would destroy the system's /dev/null), and a
  folder is never replaced (``records.atomic_path`` enforces both for every write). A run's
  own records (``metrics.json``, ``samples.csv``, ... in a run folder) are not written over
  unless ``--force``.
- A run folder is marked: the first file a run writes into a new or empty folder is
  ``MARKER``. ``run --output DIR`` refuses a DIR that holds anything else and is not a run
  (no marker, and not a run of a noisybench from before the marker: a valid metrics.json,
  a checkpoint with its state, or a config.yaml noisybench resolved), naming it; nothing
  in it is touched. Within a run folder, the folders noisybench replaces (``best/``,
  ``checkpoint/`` and their ``.old``/``.tmp``) are removed only if they hold nothing but
  its own files (``records.remove_own_dir``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from noisybench import records
from noisybench.errors import NoisybenchError
from noisybench.inputs import kind

MARKER = ".noisybench-run"  # written first into a run folder: "noisybench made this folder a run"
RUN_RECORDS = {records.METRICS_FILE, records.CONFIG_FILE, records.SAMPLES_FILE, records.EVAL_SAMPLES_FILE,
               records.HELDOUT_FILE, records.CONFUSION_FILE, records.PER_CLASS_FILE, records.WEIGHT_PLOT_FILE,
               records.MODEL_CARD, "run.log", "failed.json", "cv_scores.csv", MARKER}
OWN_DIRS = {records.CHECKPOINT_DIR, records.BEST_DIR, "folds"}
# what a run folder may hold besides its records before the marker existed or while a run starts
HARMLESS = {"run.lock"}


class NotOurs(NoisybenchError):
    """A file or folder noisybench did not create, where it would write."""


def check_output_file(path: str | Path, force: bool = False, option: str = "--output") -> Path:
    """``path`` as a file noisybench may write: new, or a regular file (a link is followed);
    not a run's own record unless ``force``. Returns the path to write."""
    if not str(path).strip():
        raise NotOurs(f"{option}: an empty path")
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # a symlink loop, a path through a file
        raise NotOurs(f"{option} {path}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise NotOurs(f"{option} {path}: {kind(mode)}, not a regular file; noisybench writes only new or regular "
                      "files")
    if not force and (path.name in RUN_RECORDS or path.parent.name in OWN_DIRS | {records.CHECKPOINT_DIR + ".old"}) \
            and is_run_folder(path.parent if path.name in RUN_RECORDS else path.parent.parent):
        raise NotOurs(f"{option} {path}: a record of the run in {path.parent}; choose another file, or pass --force "
                      "to replace it")
    return path


def written_by_noisybench(config: Path) -> bool:
    """Whether ``config`` is a config.yaml a run wrote: its resolved config, every core section."""
    from noisybench.config import load_yaml

    try:
        saved = load_yaml(config)
    except (NoisybenchError, OSError):
        return False
    return {"method", "dataset", "seed", "optimizer", "data", "model"} <= set(saved)


def is_run_folder(folder: Path) -> bool:
    """Whether noisybench made ``folder`` a run: its marker, or (a run from before the marker)
    a readable record, a checkpoint with its state, or a config.yaml it resolved."""
    if (folder / MARKER).is_file():
        return True
    if records.read_record(folder / records.METRICS_FILE) is not None:
        return True
    if any((folder / name / "state.json").is_file() for name in (records.CHECKPOINT_DIR, records.CHECKPOINT_DIR + ".old")):
        return True
    return (folder / records.CONFIG_FILE).is_file() and written_by_noisybench(folder / records.CONFIG_FILE)


def claim_run_folder(folder: Path) -> None:
    """Make ``folder`` a run folder, or refuse it: a new or empty folder (or one holding only a
    lock) gets the marker first; a run folder is kept as it is; anything else is
    refused naming it and a few of its entries, nothing in it touched. Under several
    processes the main one (``RANK`` 0) decides, as it takes the lock."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISDIR(mode):
        raise NotOurs(f"--output {folder}: {kind(mode)}; a run's output is a folder")
    if mode is not None and is_run_folder(folder):
        if not (folder / MARKER).exists():
            (folder / MARKER).write_text("a noisybench run folder\n")
        return
    entries = sorted(e.name for e in folder.iterdir()) if mode is not None else []
    foreign = [name for name in entries if name not in HARMLESS]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise NotOurs(f"--output {folder} holds files that are not a noisybench run ({shown}); nothing in it was "
                      "touched: choose a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("a noisybench run folder\n")
