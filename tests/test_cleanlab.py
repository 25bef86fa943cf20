"""Confident learning through cleanlab: the cleaning rule on a hand-built probability matrix,
the pruned loss by hand, then the fold runs, the records and resuming in real runs."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues
from conftest import comparable, read_metrics, resumed_like_straight, run_digits

import noisybench_cleanlab
from noisybench.errors import ConfigError
from noisybench_cleanlab import noisybench_loss
from noisybench_cleanlab.cleaning import Cleaning, clean, mean_one_over_kept


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
PROBS = np.array([
    [0.90, 0.05, 0.05], [0.80, 0.10, 0.10], [0.70, 0.20, 0.10], [0.10, 0.80, 0.10],  # 3: labelled 0, looks 1
    [0.10, 0.85, 0.05], [0.05, 0.90, 0.05], [0.20, 0.70, 0.10], [0.10, 0.10, 0.80],  # 7: labelled 1, looks 2
    [0.05, 0.05, 0.90], [0.10, 0.10, 0.80], [0.10, 0.20, 0.70], [0.85, 0.10, 0.05],  # 11: labelled 2, looks 0
])


def test_issues_of_a_hand_built_matrix():
    # per-class thresholds t_j = mean p_j over the samples labelled j: 0.625, 0.6375, 0.6125; a sample counts
    # in C[label][j] for the j with p_j >= t_j: three right in each class and one off each diagonal
    assert compute_confident_joint(LABELS, PROBS).tolist() == [[3, 1, 0], [0, 3, 1], [1, 0, 3]]
    found = clean(LABELS, PROBS)
    # prune by noise rate: in class i, the C[i][j] samples with the largest margin p_j − p_i
    assert np.flatnonzero(found.flagged).tolist() == [3, 7, 11]
    assert np.array_equal(found.flagged, find_label_issues(LABELS, PROBS, filter_by="prune_by_noise_rate"))
    assert np.array_equal(found.keep, [1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0])  # exactly the complement trains
    assert np.array_equal(found.label, LABELS)
    assert np.allclose(found.noise_score, 1 - PROBS[np.arange(12), LABELS])  # 1 − p(noisy label)
    relabelled = clean(LABELS, PROBS, action="relabel")
    assert np.array_equal(relabelled.label, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0]) and (relabelled.keep == 1).all()
    by_class = clean(LABELS, PROBS, filter_by="prune_by_class")
    assert np.array_equal(by_class.flagged, find_label_issues(LABELS, PROBS, filter_by="prune_by_class"))


@pytest.mark.filterwarnings("ignore:When X and pred_probs are both provided")
def test_class_weights_are_cleanlearnings():
    """Pruned, a kept sample of class k weighs 1 / P(noisy k | true k): the noise matrix from the
    calibrated joint above has 3/4 on its diagonal, so 4/3 here, as CleanLearning.fit weighs it."""
    from cleanlab.classification import CleanLearning
    from sklearn.linear_model import LogisticRegression

    found = clean(LABELS, PROBS, reweight=True)
    assert np.allclose(found.keep, np.where(found.flagged, 0, 1))  # 4/3 for every kept class, scaled to mean 1
    features = np.random.default_rng(0).normal(size=(12, 2))
    learner = CleanLearning(LogisticRegression(), find_label_issues_kwargs={"min_examples_per_class": 1})  # 10 by
    learner.fit(features, LABELS, pred_probs=PROBS)  # default there: no class here could lose a sample
    weights = learner.label_issues_df["sample_weight"].to_numpy()
    assert np.allclose(weights, np.where(found.flagged, 0, 4 / 3))
    assert np.allclose(found.keep, weights / weights[weights > 0].mean())
    assert np.array_equal(found.flagged, learner.label_issues_df["is_label_issue"])


class FakeRun:
    def __init__(self, keep, label, action="prune"):
        self.state = {"keep": torch.tensor(keep, dtype=torch.float32), "label": torch.tensor(label)}
        self.options = {"action": action}


def test_class_weights_average_one_over_the_kept_samples():
    """Σ w·ℓ / B with mean w = 1 over the kept: the step of the authors' weighted mean, not × mean w."""
    assert mean_one_over_kept(np.array([0.0, 2.0, 1.0, 1.0])).tolist() == [0.0, 1.5, 0.75, 0.75]
    assert mean_one_over_kept(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_pruned_samples_contribute_nothing():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g, requires_grad=True)
    run = FakeRun(keep=[1, 0, 1, 1, 0, 1], label=[0, 1, 2, 0, 1, 2])
    indices = torch.tensor([1, 2, 4, 5])  # samples 1 and 4 are pruned
    loss = noisybench_loss(run, logits, indices)
    by_hand = (F.cross_entropy(logits[1:2], torch.tensor([2]), reduction="sum")
               + F.cross_entropy(logits[3:4], torch.tensor([2]), reduction="sum")) / 4
    assert loss.item() == pytest.approx(by_hand.item())
    loss.backward()
    assert (logits.grad[[0, 2]] == 0).all() and (logits.grad[[1, 3]] != 0).all()


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cleanlab.folds"):
        run_digits(tmp_path, "cleanlab.folds=1", method="cleanlab")
    with pytest.raises(ConfigError, match="data.cv_folds must be 0"):
        run_digits(tmp_path, "data.cv_folds=2", method="cleanlab")


# -- in real runs -----------------------------------------------------------------------------

FAST = ("epochs=2", "noise=symmetric:0.4", "cleanlab.folds=2", "cleanlab.fold_epochs=1")


def heldout_scores(run_dir) -> pd.Series:
    parts = [pd.read_csv(run_dir / "folds" / f"fold{k}" / "heldout.csv") for k in (0, 1)]
    return pd.concat(parts).set_index("index").sort_index()["p_label"]


def test_cleanlab_resumes_exactly_and_records_the_issues(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "cleanlab", *FAST, crash_at=2)
    folds = [read_metrics(tmp_path / "a" / "folds" / f"fold{k}") for k in (0, 1)]
    assert [(f["method"], f["config"]["data"]["cv_folds"], f["config"]["data"]["cv_fold"], len(f["history"]))
            for f in folds] == [("ce", 2, 0, 1), ("ce", 2, 1, 1)]
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    # every sample's noise score is 1 − p(label) of the fold run that held it out
    assert np.allclose(samples["noise_score"], 1 - heldout_scores(tmp_path / "a").to_numpy(), atol=1e-6)
    flagged = samples["flagged"].astype(bool)
    assert straight["history"][0]["cleanlab_flagged"] == flagged.sum() > 0
    assert (samples["weight"][flagged] == 0).all() and samples["weight"][~flagged].mean() == pytest.approx(1)
    assert samples[~flagged].groupby("noisy_label")["weight"].nunique().eq(1).all()  # one weight a class
    assert straight["detection"]["f1"] is not None and straight["efficiency"]["phase_seconds"]["folds"] > 0


def test_fold_runs_leave_the_runs_own_training_alone(tmp_path, monkeypatch):
    """With nothing flagged, cleanlab trains as ce does, draw for draw: the fold runs and the
    fold predictions in between do not move the run's random streams or its model."""
    def nothing_flagged(labels, probs, filter_by, action, reweight):
        n = len(labels)
        return Cleaning(np.zeros(n, bool), 1 - probs[np.arange(n), labels], labels, np.ones(n), probs.argmax(1))

    monkeypatch.setattr(noisybench_cleanlab, "clean", nothing_flagged)
    cleaned = run_digits(tmp_path / "cleanlab", *FAST, method="cleanlab")
    plain = run_digits(tmp_path / "ce", *FAST[:2])
    drop = ("cleanlab_flagged", "cleanlab_kept", "detection_auc", "seconds")
    assert [{k: v for k, v in h.items() if k not in drop} for h in cleaned["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in plain["history"]]
    assert comparable(cleaned)["test"] == comparable(plain)["test"]
