import json

import numpy as np
import pytest

from noisybench import metrics, records


def test_detection_metrics_by_hand():
    is_noisy = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    flagged = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    score = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.4, 0.0])
    out = metrics.detection(is_noisy, flagged, score)
    # 2 of 3 flagged are noisy: FDR 1/3; 2 of 3 noisy found: recall 2/3; F1 2/3
    assert out["fdr"] == pytest.approx(1 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3)
    # AUC: pairs (noisy, clean) ranked right: 0.9,0.8 beat all 5; 0.3 beats 0.2,0.1,0.0 -> 13/15
    assert out["auc"] == pytest.approx(13 / 15)


def test_detection_counts_zero_over_zero_as_zero():
    # nothing noisy, nothing flagged: AUC undefined (one class), the rest 0/0 -> 0
    out = metrics.detection(np.array([0, 0], dtype=bool), np.array([0, 0], dtype=bool), np.array([0.1, 0.2]))
    assert out == {"auc": None, "fdr": 0.0, "recall": 0.0, "f1": 0.0}
    # noisy samples exist but nothing is flagged: F1 0, not null, so seeds are never dropped from a mean
    out = metrics.detection(np.array([1, 0, 1], dtype=bool), np.zeros(3, dtype=bool), None)
    assert out == {"auc": None, "fdr": 0.0, "recall": 0.0, "f1": 0.0}
    # everything flagged, one of three noisy: FDR 2/3, recall 1, F1 = 2 * (1/3 * 1) / (1/3 + 1) = 0.5
    out = metrics.detection(np.array([1, 0, 0], dtype=bool), np.ones(3, dtype=bool), None)
    assert out["fdr"] == pytest.approx(2 / 3) and out["recall"] == 1.0 and out["f1"] == pytest.approx(0.5)
    assert metrics.detection(None, None, None) == {"auc": None, "fdr": None, "recall": None, "f1": None}


def test_lsw_scores_keep_tiny_weights_apart():
    """alpha below ~6e-8 gives 1 - alpha == 1 in float32; LSW's score -alpha keeps their order."""
    import torch

    from noisybench_lsw import noisybench_sample_outputs

    alpha = torch.tensor([1e-9, 2e-9, 1e-8, 0.9], dtype=torch.float32)
    assert len(set((1 - alpha).tolist())) == 2  # the float32 ties the old score made
    run = type("R", (), {"state": {"alpha": alpha}, "options": {"threshold": 0.3}})()
    score = noisybench_sample_outputs(run)["noise_score"]
    is_noisy = np.array([1, 1, 0, 0], dtype=bool)  # the two smallest weights are the noisy ones
    assert metrics.detection(is_noisy, None, score.numpy())["auc"] == 1.0
    assert metrics.detection(is_noisy, None, (1 - alpha).numpy())["auc"] == 0.75  # ties: half credit


def test_label_quality_by_hand():
    noisy = np.array([0, 1, 2, 2])
    true = np.array([0, 1, 1, 2])
    corrected = np.array([0, 1, 1, 1])
    flags = (noisy != true).astype(np.int8)
    out = metrics.label_quality(noisy, true, flags, corrected)
    assert out == {"noisy_accuracy": 0.75, "corrected_accuracy": 0.75, "changed_fraction": 0.5}


def test_label_quality_and_detection_over_known_samples_only():
    # Food-101N style: only some labels are known right (0) or wrong (1); -1 unknown
    noisy = np.array([0, 1, 2, 2, 1, 0])
    true = np.array([0, -1, -1, 2, -1, -1])
    flags = np.array([0, 1, -1, 0, 1, -1], dtype=np.int8)
    corrected = np.array([0, 2, 2, 1, 1, 0])
    out = metrics.sample_metrics(noisy, true, flags, {"corrected_label": corrected,
                                                      "noise_score": np.array([0.1, 0.9, 0.5, 0.2, 0.8, 0.0])})
    assert out["labels"]["noisy_accuracy"] == 0.5  # 2 right of 4 known
    assert out["labels"]["corrected_accuracy"] == 0.5  # true known for samples 0 and 3: 0 right, 3 wrong
    assert out["labels"]["changed_fraction"] == pytest.approx(2 / 6)
    # known: 0 (clean, kept), 1 (noisy, changed), 3 (clean, changed), 4 (noisy, kept)
    assert out["detection"]["fdr"] == 0.5 and out["detection"]["recall"] == 0.5
    assert out["detection"]["auc"] == 1.0  # 0.9 and 0.8 above 0.1 and 0.2


def test_classification_counts_absent_classes_in_the_macro_average():
    out = metrics.classification(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), num_classes=3)
    assert out["accuracy"] == 0.75
    # recalls 1, 0.5, 0 -> macro 0.5; precisions 2/3, 1, 0 -> macro 5/9
    assert out["macro_recall"] == pytest.approx(0.5)
    assert out["macro_precision"] == pytest.approx(5 / 9)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    records.write_json(path, {"a": 1})
    with pytest.raises(ValueError):
        records.write_json(path, {"a": float("nan")})  # not valid JSON
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_replace_dir_swaps_checkpoints(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "old.json").write_text("1")  # the kinds of file noisybench writes there
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "new.safetensors").write_text("2")
    records.replace_dir(tmp_path / "checkpoint.tmp", tmp_path / "checkpoint")
    assert [p.name for p in (tmp_path / "checkpoint").iterdir()] == ["new.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    assert records.latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint.old").mkdir()  # a crash between the two renames
    assert records.latest_checkpoint(tmp_path) == tmp_path / "checkpoint.old"


def test_the_per_epoch_auc_is_the_records_auc():
    from noisybench.metrics import noise_auc, sample_metrics

    rng = np.random.default_rng(0)
    flags = rng.choice([-1, 0, 1], size=200)  # unknown, right, wrong
    score = rng.normal(size=200) + (flags == 1)
    noisy = rng.integers(0, 5, size=200)
    full = sample_metrics(noisy, None, flags, {"noise_score": score, "flagged": score > 1})
    assert noise_auc(flags, score) == pytest.approx(full["detection"]["auc"], abs=1e-12)
    tied = np.round(score)  # ties between a right and a wrong label count one half
    with_ties = sample_metrics(noisy, None, flags, {"noise_score": tied, "flagged": tied > 1})
    assert noise_auc(flags, tied) == pytest.approx(with_ties["detection"]["auc"], abs=1e-12)
    assert noise_auc(np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.1, 0.0])) == 0.875  # pairs (0.9, 0.1) (0.9, 0) (0.1, 0.1) (0.1, 0): (1 + 1 + ½ + 1) / 4
    assert noise_auc(flags, None) is None and noise_auc(np.full(200, -1), score) is None
    assert noise_auc(np.zeros(5, dtype=int), np.arange(5.0)) is None  # no wrong label: no AUC
