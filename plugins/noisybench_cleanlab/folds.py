"""Out-of-sample probabilities from K fold runs, as ``noisybench export --folds`` trains them.

Fold run k is a ``ce`` run of the calling run's own config with ``data.cv_folds=K
data.cv_fold=k``: it trains on every fold but k (stratified by noisy label, seeded by
``data.split_seed``) and its final model scores fold k, which it never saw. The runs live in
``RUN_DIR/folds/fold<k>/`` (where ``export --folds`` puts its fold runs, which leaderboards
do not list as rows) and resume like any run (``nested.train_inside``), so
an interrupted cleaning stage goes on where it stopped. The probabilities of fold k's
samples come from that run's final weights, loaded into the calling run's model for one
eval pass (its own weights are put back after); its ``heldout.csv`` gives the positions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisybench import records
from noisybench.checkpoint import load_model
from noisybench.config import dump
from noisybench.errors import ConfigError
from noisybench.folds import FOLDS_DIR
from noisybench.logs import logger
from noisybench.nested import train_inside

FOLD_METHOD = "ce"


def fold_config(config: dict[str, Any], folds: int, fold: int, epochs: int | None) -> dict[str, Any]:
    """The calling run's config as a ``ce`` run on all folds but ``fold``, quiet, untracked."""
    from noisybench.api import make_config

    overrides = [f"data.cv_folds={folds}", f"data.cv_fold={fold}", "progress=false", "report.trackers=[]"]
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    with tempfile.TemporaryDirectory() as scratch:  # the resolved config as a file layer: other methods' sections drop
        path = Path(scratch) / "config.yaml"
        path.write_text(dump(config))
        return make_config(FOLD_METHOD, config["dataset"], config_file=path, overrides=overrides)


def fold_probabilities(run, folder: Path, folds: int, epochs: int | None) -> np.ndarray:
    """(num_train × K) probabilities, every row from the fold run that held that sample out."""
    model = run.accelerator.unwrap_model(run.model)
    own = {name: t.detach().clone() for name, t in model.state_dict().items()}
    probs = np.full((run.num_train, run.num_classes), np.nan)
    try:
        for fold in range(folds):
            out = folder / f"fold{fold}"
            if run.accelerator.is_main_process:
                logger.info(f"cleanlab: fold run {fold + 1} of {folds} (cross-entropy, fold {fold} held out) in {out}")
            train_inside(fold_config(run.config, folds, fold, epochs), out)
            held = pd.read_csv(out / records.HELDOUT_FILE)
            if not np.array_equal(held["noisy_label"].to_numpy(), run.noisy_labels.numpy()[held["index"].to_numpy()]):
                raise ConfigError(f"{out}: its held-out labels are not this run's; remove {folder} and run again")
            load_model(out / records.CHECKPOINT_DIR, model)
            logits, _ = run.predict(torch.as_tensor(held["index"].to_numpy()))
            probs[held["index"].to_numpy()] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    finally:
        model.load_state_dict(own)
    if np.isnan(probs).any():
        raise ConfigError(f"{folder}: the fold runs did not score every training sample")
    return probs
