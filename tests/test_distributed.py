"""Results that do not depend on the number of processes: every eval pass uses the main
process's weights, and ``noisybench evaluate`` reproduces a record under one process or two."""

import numpy as np
import pandas as pd
import pytest

import noisybench_smp
from conftest import noisybench_subprocess, read_metrics, run_digits
from noisybench.evaluate import evaluate, trained_run

RECORDED = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def test_evaluate_reproduces_the_record_exactly(clean_ce_run, tmp_path):
    record = read_metrics(clean_ce_run)
    test = evaluate(clean_ce_run)
    assert {k: test["metrics"][k] for k in RECORDED} == record["test"] and test["matches_record"]
    val = evaluate(clean_ce_run, "val")
    assert val["metrics"]["accuracy"] == record["history"][-1]["val_accuracy"] and val["matches_record"]
    train = evaluate(clean_ce_run, "train", features=tmp_path / "f.npy")
    assert train["metrics"]["samples"] == 1078 and train["metrics"]["true_label_accuracy"] > 0.85
    assert np.load(tmp_path / "f.npy").shape[0] == 1078


def test_evaluate_says_when_the_checkpoint_is_not_the_record(tmp_path, capsys):
    from noisybench.cli import main

    run_digits(tmp_path / "a", "epochs=1", "noise=symmetric:0.4")
    run_digits(tmp_path / "b", "epochs=2", "noise=symmetric:0.4")
    (tmp_path / "a" / "checkpoint").rename(tmp_path / "a" / "old")
    (tmp_path / "b" / "checkpoint").rename(tmp_path / "a" / "checkpoint")  # another model's weights
    assert main(["evaluate", str(tmp_path / "a")]) == 1
    assert "DIFFERS from metrics.json" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2


@pytest.fixture(scope="module")
def two_process_smp(tmp_path_factory):
    """SMP on digits under two processes, each with a loader worker (augmentation keyed by
    sample, whichever process and worker load it); its last labels come from the final
    model's features."""
    out = tmp_path_factory.mktemp("two") / "run"
    proc = noisybench_subprocess("run", "--method", "smp", "--dataset", "digits", "--output", str(out), "epochs=2",
                                 "progress=false", "noise=symmetric:0.4", "smp.start_epoch=1", "smp.max_changed=null",
                                 "batch_size=100", "data.num_workers=1",
                                 processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_two_process_features_and_test_accuracy_equal_one_process_evaluation(two_process_smp):
    record = read_metrics(two_process_smp)
    assert record["experiment"]["num_processes"] == 2
    result = evaluate(two_process_smp)  # this process alone
    assert {k: result["metrics"][k] for k in RECORDED} == record["test"]
    # The final labels: prototypes and sigma_c from the eval features of the final model,
    # computed under two processes during the run and here in one from the checkpoint.
    with trained_run(two_process_smp) as trainer:
        y_hat, margin = noisybench_smp.correct_labels(trainer.run, 3)
    samples = pd.read_csv(two_process_smp / "samples.csv")
    assert (samples["corrected_label"].to_numpy() == y_hat.cpu().numpy()).all()
    assert np.allclose(samples["noise_score"], margin.numpy(), atol=1e-5)
    assert record["labels"]["corrected_accuracy"] == pytest.approx(
        np.mean(y_hat.cpu().numpy() == samples["true_label"].to_numpy()))


def test_evaluate_under_two_processes_equals_one(two_process_smp, tmp_path):
    proc = noisybench_subprocess("evaluate", str(two_process_smp), processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("equals metrics.json") == 1
    proc = noisybench_subprocess("evaluate", str(two_process_smp), "--split", "train", "--features",
                                 str(tmp_path / "two.npy"), processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluate(two_process_smp, "train", features=tmp_path / "one.npy")
    assert np.allclose(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"), atol=1e-5)
