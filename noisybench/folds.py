"""Cross-validated label scores for the training set (``noisybench export --folds K``).

As cleanlab scores labels out of sample: K runs of the finished run's own config, run k
training on all but fold k of the training set (``data.cv_folds=K data.cv_fold=k``,
stratified by noisy label, seeded by ``data.split_seed``) and scoring fold k with its final
model. Every training sample is then scored by a model that never saw it:
cv_noise_score = 1 − p(noisy label). The runs go to ``RUN_DIR/folds/fold<k>/`` and resume
like any run, so an interrupted cross-validation goes on where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from noisybench import records
from noisybench.errors import ConfigError

FOLDS_DIR = "folds"
CV_FILE = "cv_scores.csv"


def cross_validate(run_dir: str | Path, folds: int, overrides: Iterable[str] = (),
                   announce=print) -> pd.DataFrame:
    """(index, cv_noise_score) for every training sample of the run in ``run_dir``, written to
    ``RUN_DIR/cv_scores.csv``; ``overrides`` change the fold runs' config (e.g. epochs=5)."""
    from noisybench.api import make_config
    from noisybench.engine import train

    run_dir = Path(run_dir)
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if not (run_dir / records.CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir}: no {records.CONFIG_FILE}; not a run folder")
    parts = []
    for fold in range(folds):
        folder = run_dir / FOLDS_DIR / f"fold{fold}"
        announce(f"fold {fold + 1} of {folds}: training on the other folds in {folder}")
        config = make_config(resume_from=run_dir, overrides=[*overrides, f"data.cv_folds={folds}",
                                                             f"data.cv_fold={fold}"])
        train(config, folder, resume=True)
        parts.append(pd.read_csv(folder / records.HELDOUT_FILE))
    scores = pd.concat(parts).sort_values("index", kind="stable").reset_index(drop=True)
    table = pd.DataFrame({"index": scores["index"], "cv_noise_score": scores["noise_score"]})
    records.write_csv(run_dir / CV_FILE, table)
    return table
