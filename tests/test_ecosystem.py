"""What a user expects around training: best/ and predict, logs, trackers, config introspection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess
from fixtures import write_jpeg, write_lines

from noisybench.api import run

QUIET = ["progress=false", "data.num_workers=0"]


def labelled_photos(root: Path, per_class: int = 12) -> Path:
    """A CSV dataset of small JPEGs in three colour classes, with explicit train/val/test rows."""
    rows = ["path,label,split"]
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(per_class):
            write_jpeg(root / name / f"{i}.jpg", c * 3 + 1, size=(30, 26))
            split = "test" if i < 3 else "val" if i < 6 else "train"
            rows.append(f"{name}/{i}.jpg,{name},{split}")
    write_lines(root / "photos.csv", rows)
    return root / "photos.csv"


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("photos")
    manifest = labelled_photos(root / "data")
    record = run("ce", "csv", root / "run", [*QUIET, f"data.root={manifest}", "epochs=3", "eval.every=1",
                                             "batch_size=8", "optimizer.lr=0.001"])  # half-trained: mixed answers
    return root / "run", manifest, record


def split_csv(manifest: Path, split: str, out: Path) -> Path:
    table = pd.read_csv(manifest)
    table[table["split"] == split][["path", "label"]].to_csv(out, index=False)
    return out


def test_best_holds_the_best_val_epochs_weights(photo_run):
    from safetensors.torch import load_file

    run_dir, _, record = photo_run
    best = json.loads((run_dir / "best" / "best.json").read_text())
    assert best == {"epoch": record["best_val"]["epoch"], "val_accuracy": record["best_val"]["accuracy"]}
    weights = load_file(str(run_dir / "best" / "model.safetensors"))
    last = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    assert weights.keys() == last.keys()
    assert (best["epoch"] == len(record["history"])) == all(torch.equal(weights[k], last[k]) for k in weights)


def test_predict_with_best_and_last_weights_reproduces_the_recorded_test_accuracy(photo_run, tmp_path):
    from noisybench.predict import predict

    run_dir, manifest, record = photo_run
    test_rows = split_csv(manifest, "test", manifest.parent / "test_rows.csv")
    best = predict(run_dir, test_rows, "best")
    last = predict(run_dir, test_rows, "last")
    assert (best["predicted_label"] == best["label"]).mean() == pytest.approx(record["best_val"]["test_accuracy"])
    assert (last["predicted_label"] == last["label"]).mean() == pytest.approx(record["test"]["accuracy"])
    assert 0.4 < record["test"]["accuracy"] < 0.9  # not all right, not all wrong: the comparison means something
    confusion = pd.read_csv(run_dir / "confusion_matrix.csv", index_col=0).to_numpy()
    assert np.array_equal(confusion, pd.crosstab(last["label"], last["predicted_label"]).reindex(
        index=range(3), columns=range(3), fill_value=0).to_numpy())  # image by image as the run predicted
    probs = best[[c for c in best if c.startswith("p_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    p_label = probs[np.arange(len(best)), best["label"]]
    assert np.allclose(best["noise_score"], 1 - p_label)
    assert list(best.columns[:5]) == ["path", "predicted_label", "predicted_class", "label", "label_class"]


def test_predict_command_on_a_folder_without_labels(photo_run, tmp_path):
    run_dir, manifest, _ = photo_run
    out = tmp_path / "pred.csv"
    proc = noisybench_subprocess("predict", str(run_dir), "--input", str(manifest.parent / "red"), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"predicted 12 images with the best weights into {out}" in proc.stdout
    table = pd.read_csv(out)
    assert len(table) == 12 and "noise_score" not in table and set(table["predicted_class"]) <= {"red", "green", "blue"}
    bad = noisybench_subprocess("predict", str(run_dir), "--input", str(tmp_path / "nowhere"), "--output", str(out))
    assert bad.returncode == 2 and "no such folder or CSV file" in bad.stderr
