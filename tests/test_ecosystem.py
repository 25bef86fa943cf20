"""What a user expects around training: best/ and predict, logs, trackers, config introspection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess
from fixtures import write_lines

from noisybench.api import run

QUIET = ["progress=false", "data.num_workers=0"]


def labelled_photos(root: Path, per_class: int = 12) -> Path:
    """A CSV dataset of small JPEGs in three colour classes, with explicit train/val/test rows."""
    from PIL import Image

    rows = ["path,label,split"]
    rng = np.random.default_rng(0)  # the same pixels in every process (fixtures.write_jpeg hashes names)
    for c, name in enumerate(["red", "green", "blue"]):
        for i in range(per_class):
            base = np.array([60 + 50 * c, 120, 180 - 50 * c])
            pixels = np.clip(base + rng.integers(-60, 60, size=(26, 30, 3)), 0, 255).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
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


def test_run_log_holds_the_epoch_lines_and_a_timm_warning(tmp_path):
    """A deprecated timm model name makes timm warn (Python warnings); the warning and the
    run's own lines land in run.log, with time and level."""
    run("ce", "digits", tmp_path / "run", [*QUIET, "epochs=1", "model.name=tf_efficientnet_b0_ap"])
    log = (tmp_path / "run" / "run.log").read_text()
    assert "Mapping deprecated model name tf_efficientnet_b0_ap" in log and "WARNING py.warnings" in log
    assert "INFO noisybench: choices: model tf_efficientnet_b0_ap" in log
    assert "INFO noisybench: epoch 1 | loss" in log


def test_bars_are_off_without_a_terminal_and_the_epoch_lines_stay(tmp_path):
    proc = noisybench_subprocess("run", "--method", "ce", "--dataset", "digits", "--output", str(tmp_path / "run"),
                                 "epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1 | loss" in proc.stdout and "epoch 2 | loss" in proc.stdout
    assert "\r" not in proc.stdout + proc.stderr and "it/s" not in proc.stdout + proc.stderr  # no bar text
    quiet = noisybench_subprocess("run", "--method", "ce", "--dataset", "digits", "--output", str(tmp_path / "quiet"),
                                  "epochs=1", "progress=false")
    assert "epoch 1 | loss" not in quiet.stdout and "epoch 1 | loss" in (tmp_path / "quiet" / "run.log").read_text()


def test_compare_announces_each_run_and_where_it_wrote(tmp_path):
    proc = noisybench_subprocess("compare", "--methods", "ce", "--dataset", "digits", "--seeds", "0,1",
                                 "--output", str(tmp_path), "epochs=1", "progress=false")
    assert proc.returncode == 0, proc.stderr
    for i, seed in ((1, 0), (2, 1)):
        assert f"run {i} of 2: ce, seed {seed}, in {tmp_path / 'digits' / 'ce' / f'seed{seed}'}" in proc.stdout
    assert f"wrote the leaderboard to {tmp_path / 'leaderboard.md'} and plots to {tmp_path / 'accuracy_vs_time.png'}" \
        in proc.stdout


def test_config_shows_every_key_with_its_source_and_the_options_meaning(tmp_path):
    from noisybench.api import describe_config, make_config
    from noisybench.config import flatten

    (tmp_path / "c.yaml").write_text("optimizer:\n  momentum: 0.8\nsmp:\n  alpha: 0.3\n")
    text = describe_config("smp", "digits", tmp_path / "c.yaml", ["seed=3", "smp.num_prototypes=4"])
    config = make_config("smp", "digits", tmp_path / "c.yaml", ["seed=3", "smp.num_prototypes=4"])
    lines = {line.strip().split(":", 1)[0]: line for line in text.splitlines()}
    for key in flatten({k: v for k, v in config.items() if k not in ("method", "dataset")}):
        assert key.rsplit(".", 1)[-1] in lines, key  # every key is shown
    assert "seed: 3  # command line" in text and "epochs: 15  # dataset defaults" in text
    assert "momentum: 0.8  # config file" in text and "eval_batch_size: 512  # default" in text
    assert "recipe: scratch  # default auto, resolved" in text and "lr: 0.05  # recipe scratch" not in text
    assert "alpha: 0.3  # config file; eq. 4's weight of the corrected labels' loss" in text
    assert "num_prototypes: 4  # command line; p: prototypes per class" in text
    proc = noisybench_subprocess("config", "--method", "ce", "--dataset", "digits", "optimizer.lr=0.2")
    assert proc.returncode == 0 and "  lr: 0.2  # command line" in proc.stdout
    assert "label_smoothing: 0.0  # default; cross-entropy's label smoothing" in proc.stdout


def test_dry_run_builds_everything_and_trains_nothing(tmp_path):
    proc = noisybench_subprocess("run", "--method", "lsw", "--dataset", "digits", "setting=clean",
                                 "noise=symmetric:0.4", "--output", str(tmp_path / "run"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "noise: symmetric:0.4  # command line" in proc.stdout
    assert "data: digits, 10 classes, train 970, val 359, test 360, clean 108; noise symmetric" in proc.stdout
    assert "model: small_cnn, 94,186 parameters" in proc.stdout and "dry run: nothing was trained" in proc.stdout
    assert "epoch 1" not in proc.stdout and not (tmp_path / "run").exists()
    bad = noisybench_subprocess("run", "--method", "lsw", "--dataset", "digits", "--dry-run")
    assert bad.returncode == 2 and "lsw needs a clean set" in bad.stderr  # the method's setup ran


def test_export_with_two_folds_scores_every_training_sample_out_of_sample(tmp_path):
    from noisybench.cli import main
    from noisybench.datasets import fold_positions

    record = run("ce", "digits", tmp_path / "run", [*QUIET, "epochs=2", "noise=symmetric:0.4"])
    assert main(["export", str(tmp_path / "run"), "--folds", "2", "epochs=6"]) == 0
    table = pd.read_csv(tmp_path / "run" / "suspects.csv")
    train = table[table["split"] == "train"]
    assert len(train) == record["num_train"] and train["cv_noise_score"].between(0, 1).all()
    noisy = pd.read_csv(tmp_path / "run" / "samples.csv")["noisy_label"].to_numpy()
    for fold in range(2):
        kept, held = fold_positions(noisy, fold, 2, 0)
        fold_run = tmp_path / "run" / "folds" / f"fold{fold}"
        assert len(pd.read_csv(fold_run / "samples.csv")) == len(kept)  # trained without its fold
        heldout = pd.read_csv(fold_run / "heldout.csv")
        assert heldout["index"].tolist() == held.tolist() and (heldout["noisy_label"] == noisy[held]).all()
        assert json.loads((fold_run / "metrics.json").read_text())["experiment"]["data.cv_fold"] == fold
    samples = pd.read_csv(tmp_path / "run" / "samples.csv").merge(train[["index", "cv_noise_score"]], on="index")
    noisy_rows = samples["is_noisy"] == 1
    # out-of-sample scores find the flipped labels: mislabelled samples score higher on average
    assert samples.loc[noisy_rows, "cv_noise_score"].mean() > samples.loc[~noisy_rows, "cv_noise_score"].mean() + 0.2


def test_a_tensorboard_event_file_holds_the_history_and_the_result(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run("ce", "digits", tmp_path / "run", [*QUIET, "epochs=3", "report.trackers=[tensorboard]"])
    events = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    board = EventAccumulator(str(events[0].parent))
    board.Reload()
    losses = [(e.step, e.value) for e in board.Scalars("train_loss")]
    assert losses == [(h["epoch"], pytest.approx(h["train_loss"], rel=1e-6)) for h in record["history"]]
    assert board.Scalars("test/accuracy")[0].value == pytest.approx(record["test"]["accuracy"])


def test_a_missing_tracker_package_fails_before_training_with_the_pip_line(tmp_path):
    proc = noisybench_subprocess("run", "--method", "ce", "--dataset", "digits", "--output", str(tmp_path / "run"),
                                 "report.trackers=[wandb]")
    assert proc.returncode == 2 and "report.trackers: wandb not installed; pip install wandb" in proc.stderr
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_cosine_schedule_with_warm_up_from_timm_follows_its_formula(tmp_path):
    import math

    record = run("ce", "digits", tmp_path / "run", [*QUIET, "epochs=6", "optimizer.lr=0.05", "lr_schedule.name=cosine",
                                                    "lr_schedule.warmup_epochs=2", "lr_schedule.warmup_lr=0.001"])
    expected = [0.001, 0.001 + (0.05 - 0.001) / 2] + [0.5 * 0.05 * (1 + math.cos(math.pi * t / 6)) for t in (2, 3, 4, 5)]
    assert [h["lr"] for h in record["history"]] == pytest.approx(expected, rel=1e-9)
    step = run("ce", "digits", tmp_path / "step", [*QUIET, "epochs=4", "optimizer.lr=0.05", "lr_schedule.step_every=2",
                                                   "lr_schedule.warmup_epochs=1", "lr_schedule.warmup_lr=0.01"])
    assert [h["lr"] for h in step["history"]] == pytest.approx([0.01, 0.05, 0.005, 0.005], rel=1e-9)


def test_a_timm_schedule_resumes_exactly_and_extends(tmp_path):
    from conftest import resumed_like_straight

    straight, _ = resumed_like_straight(tmp_path, "ce", "epochs=5", "lr_schedule.name=cosine",
                                        "lr_schedule.warmup_epochs=1", crash_at=3)
    longer = run("ce", "digits", tmp_path / "b", [*QUIET, "epochs=7"], resume=True)
    fresh = run("ce", "digits", tmp_path / "c", [*QUIET, "epochs=7", "lr_schedule.name=cosine",
                                                 "lr_schedule.warmup_epochs=1"])
    assert [h["lr"] for h in longer["history"][5:]] == pytest.approx([h["lr"] for h in fresh["history"][5:]])
