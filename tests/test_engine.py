import json

import numpy as np
import pandas as pd
import pytest

from conftest import BestAt, CrashAt, comparable, noisybench_subprocess, read_metrics, run_digits
from noisybench.errors import ConfigError

RECORD_KEYS = {
    "schema_version", "fingerprint", "method", "dataset", "setting", "seed", "noise", "test", "best_val", "labels",
    "detection", "efficiency", "history", "environment", "config", "experiment",
}


def test_ce_learns_noise_free_digits(clean_ce_run):
    metrics = read_metrics(clean_ce_run)
    assert metrics["test"]["accuracy"] > 0.85  # chance is 0.10
    assert metrics["best_val"]["test_accuracy"] > 0.85
    assert metrics["labels"]["noisy_accuracy"] == 1.0
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] / 2


def test_record_has_the_documented_schema(clean_ce_run):
    m = read_metrics(clean_ce_run)
    assert RECORD_KEYS <= set(m)
    assert m["schema_version"] == 2 and m["method"] == "ce" and m["dataset"] == "digits"
    assert m["config"]["epochs"] == 6 and m["config"]["method"] == "ce"
    # the fingerprint is recomputable from the record: SHA-256 of the experiment less its seed
    canonical = json.dumps({k: v for k, v in m["experiment"].items() if k != "seed"}, sort_keys=True,
                           separators=(",", ":"))
    assert m["fingerprint"] == __import__("hashlib").sha256(canonical.encode()).hexdigest()[:16]
    assert m["experiment"]["seed"] == 0 and m["experiment"]["num_processes"] == 1
    assert m["experiment"]["mixed_precision"] == "no" and len(m["experiment"]["data.identity"]) == 16
    assert "progress" not in m["experiment"] and "eval_batch_size" not in m["experiment"]
    assert m["noise"] == {"type": "none", "rate": 0.0}
    assert set(m["test"]) == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    assert all(0.0 <= v <= 1.0 for v in m["test"].values())
    assert set(m["best_val"]) == {"epoch", "accuracy", "test_accuracy"}
    assert m["best_val"]["accuracy"] == max(h["val_accuracy"] for h in m["history"])
    assert {"noisy_accuracy", "corrected_accuracy", "corrected_accuracy_initial", "changed_fraction"} <= set(m["labels"])
    assert m["labels"]["corrected_accuracy"] is None  # ce corrects nothing
    assert set(m["detection"]) == {"auc", "fdr", "recall", "f1"}
    eff = m["efficiency"]
    for key in ("total_seconds", "epoch_seconds", "phase_seconds", "train_images_per_second", "peak_memory_bytes",
                "parameters", "model_bytes", "inference_ms_per_image"):
        assert key in eff
    assert len(eff["epoch_seconds"]) == 6 and eff["parameters"] > 0 and eff["model_bytes"] >= 4 * eff["parameters"]
    assert {"train", "eval"} <= set(eff["phase_seconds"])
    assert [h["epoch"] for h in m["history"]] == list(range(1, 7))
    for h in m["history"]:
        assert {"epoch", "train_loss", "val_accuracy", "test_accuracy"} <= set(h)
    assert m["environment"]["torch"] and m["environment"]["num_processes"] == 1


def test_run_folder_holds_config_samples_confusion_and_checkpoint(clean_ce_run):
    config = (clean_ce_run / "config.yaml").read_text()
    assert "method: ce" in config and "epochs: 6" in config
    samples = pd.read_csv(clean_ce_run / "samples.csv")
    assert list(samples["index"]) == list(range(1078))
    assert {"noisy_label", "true_label", "train_loss"} <= set(samples.columns)
    confusion = pd.read_csv(clean_ce_run / "confusion_matrix.csv", index_col=0)
    metrics = read_metrics(clean_ce_run)
    assert confusion.values.sum() == 360
    assert np.trace(confusion.values) / 360 == pytest.approx(metrics["test"]["accuracy"])
    assert (clean_ce_run / "checkpoint" / "pytorch_model.bin").exists() or any((clean_ce_run / "checkpoint").iterdir())


def test_noise_is_recorded_and_true_labels_kept(tmp_path):
    m = run_digits(tmp_path, "epochs=1", "noise=asymmetric:0.4")
    assert m["noise"] == {"type": "asymmetric", "rate": 0.4}
    samples = pd.read_csv(tmp_path / "samples.csv")
    flipped = samples[samples.noisy_label != samples.true_label]
    assert len(flipped) / len(samples) == pytest.approx(0.4, abs=10 / len(samples))
    assert ((flipped.true_label + 1) % 10 == flipped.noisy_label).all()
    assert m["labels"]["noisy_accuracy"] == pytest.approx(1 - len(flipped) / len(samples))


def test_resume_gives_the_same_result_as_a_straight_run(tmp_path):
    overrides = ("epochs=3", "noise=symmetric:0.3", "lr_schedule.step_every=2", "seed=5")
    straight = run_digits(tmp_path / "straight", *overrides)
    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path / "resumed", *overrides, plugins=[CrashAt(3)])
    folder = tmp_path / "resumed"
    assert not (folder / "metrics.json").exists()  # crashed runs leave no record
    assert not list(folder.glob(".metrics.json*"))
    assert (folder / "checkpoint").is_dir()
    resumed = run_digits(folder, resume=True)
    assert comparable(resumed) == comparable(straight)
    a = pd.read_csv(tmp_path / "straight" / "samples.csv")
    b = pd.read_csv(folder / "samples.csv")
    pd.testing.assert_frame_equal(a, b)


def test_resume_may_extend_epochs(tmp_path):
    run_digits(tmp_path, "epochs=1")
    (tmp_path / "metrics.json").unlink()  # as if stopped after epoch 1
    m = run_digits(tmp_path, "epochs=2", resume=True)
    assert [h["epoch"] for h in m["history"]] == [1, 2]


def test_existing_run_folder_is_not_overwritten(tmp_path):
    run_digits(tmp_path, "epochs=1")
    before = (tmp_path / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        run_digits(tmp_path, "epochs=1")
    assert run_digits(tmp_path, resume=True) == json.loads(before)  # finished: returned as is


def test_two_processes_on_cpu_see_every_sample_once(tmp_path):
    out = tmp_path / "ddp"
    proc = noisybench_subprocess("run", "--method", "ce", "--dataset", "digits", "--output", str(out), "epochs=2",
                                 "progress=false", "noise=symmetric:0.4", "batch_size=100", processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_metrics(out)
    assert m["environment"]["num_processes"] == 2
    for h in m["history"]:
        # 1078 samples in batches of 100 on 2 processes: accelerate pads to 1200
        assert h["samples_trained"] == 1200
        assert h["samples_seen"] == 1078
    samples = pd.read_csv(out / "samples.csv")
    assert list(samples["index"]) == list(range(1078))
    assert samples["train_loss"].notna().all()
    assert proc.stdout.count("done:") == 1  # one report, from the main process


def test_bf16_mixed_precision_runs_on_cpu(tmp_path):
    m = run_digits(tmp_path, "epochs=2", "mixed_precision=bf16")
    assert m["environment"]["mixed_precision"] == "bf16"
    assert m["test"]["accuracy"] > 0.3


def test_fp16_without_a_gpu_is_refused(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        run_digits(tmp_path, "epochs=1", "mixed_precision=fp16")
    assert not (tmp_path / "metrics.json").exists()


def test_test_once_at_the_end_gives_the_numbers_of_testing_every_epoch(tmp_path):
    """eval.test=end (the default) tests the last model and the kept best-val weights once: the
    same numbers as testing after every epoch, and the same training (no random draw moves).
    The best val epoch is made epoch 2 by hand (BestAt), so the kept weights are not the last."""
    every = run_digits(tmp_path / "every", "epochs=4", "noise=symmetric:0.4", "eval.test=every", plugins=[BestAt(2)])
    end = run_digits(tmp_path / "end", "epochs=4", "noise=symmetric:0.4", plugins=[BestAt(2)])
    assert [h["test_accuracy"] for h in end["history"]][:-1] == [None] * 3
    assert all(h["test_accuracy"] is not None for h in every["history"])
    assert end["evaluation"] == {"every": 1, "test": "end", "val_epochs": [1, 2, 3, 4], "test_epochs": [4]}
    assert every["evaluation"]["test_epochs"] == [1, 2, 3, 4]
    assert end["best_val"] == every["best_val"] and end["best_val"]["epoch"] == 2
    assert end["best_val"]["test_accuracy"] == every["history"][1]["test_accuracy"] != end["test"]["accuracy"]
    assert end["test"] == every["test"] and end["fingerprint"] == every["fingerprint"]
    a, b = pd.read_csv(tmp_path / "every" / "samples.csv"), pd.read_csv(tmp_path / "end" / "samples.csv")
    assert a.equals(b)


def test_val_every_k_epochs_and_at_the_last(tmp_path):
    m = run_digits(tmp_path, "epochs=5", "eval.every=2")
    assert m["evaluation"]["val_epochs"] == [2, 4, 5]
    assert [h["val_accuracy"] is not None for h in m["history"]] == [False, True, False, True, True]
    assert m["best_val"]["epoch"] in (2, 4, 5)


def test_best_val_weights_survive_a_resume(tmp_path):
    """Interrupted after the best-val epoch (2, by hand), the resumed run still tests that epoch's weights."""
    straight = run_digits(tmp_path / "a", "epochs=4", "noise=symmetric:0.4", plugins=[BestAt(2)])
    assert straight["best_val"]["epoch"] == 2
    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path / "b", "epochs=4", "noise=symmetric:0.4", plugins=[BestAt(2), CrashAt(4)])
    resumed = run_digits(tmp_path / "b", "epochs=4", "noise=symmetric:0.4", resume=True, plugins=[BestAt(2)])
    assert resumed["best_val"] == straight["best_val"] and resumed["test"] == straight["test"]


def test_threads_sets_torchs_cpu_threads_and_not_the_experiment(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        one = run_digits(tmp_path / "one", "epochs=1", "threads=1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    default = run_digits(tmp_path / "default", "epochs=1")
    assert "threads" not in one["experiment"] and one["fingerprint"] == default["fingerprint"]


def test_startup_counts_from_the_end_of_the_previous_run_in_a_process(tmp_path):
    """The first run of a process counts from the import of noisybench; a later one from the
    end of the run before, not from the start of the process."""
    import time

    from noisybench import engine

    before = time.perf_counter()
    first = run_digits(tmp_path / "a", "epochs=1")
    after = time.perf_counter()
    origin = engine._clock["origin"]
    assert before < origin <= after
    second = run_digits(tmp_path / "b", "epochs=1")
    end = time.perf_counter()
    efficiency = second["efficiency"]
    assert 0 < efficiency["startup_seconds"] <= efficiency["first_batch_seconds"] <= end - origin
    assert first["efficiency"]["first_batch_seconds"] >= first["efficiency"]["startup_seconds"] > 0


def test_a_finished_run_leaves_no_loader_workers_behind(tmp_path):
    """Persistent workers stop with their run; left to a later garbage collection, a worker forked
    by the next run of a sweep would inherit them and fail to stop them."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    run_digits(tmp_path, "epochs=2", "data.num_workers=1", "noise=symmetric:0.4", method="smp")
    assert set(multiprocessing.active_children()) == before


def test_a_run_with_loader_workers_stops_them_at_once(tmp_path, monkeypatch):
    """The end of a run stops every loader's workers in order (stop message, then join); torch's
    garbage-collector path closed their queues first and joined each worker until its 5-second
    time-out: 26 s after the last epoch line of a run with workers. A join that times out fails this."""
    import multiprocessing
    import time

    from noisybench import engine

    finished = []
    fit = engine.Trainer.fit

    def timed(self, resume):
        record = fit(self, resume)
        finished.append(time.perf_counter())  # the record is written: what is left is clean-up
        return record

    monkeypatch.setattr(engine.Trainer, "fit", timed)
    before = set(multiprocessing.active_children())
    run_digits(tmp_path, "epochs=1", "data.num_workers=2")
    assert time.perf_counter() - finished[0] < 4.5  # under one worker's join time-out, however loaded the machine
    assert set(multiprocessing.active_children()) == before
