"""SMP against the paper's equations on cases computed by hand, then in real runs."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import resumed_like_straight, run_digits
from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench_smp import candidates, noisybench_loss
from noisybench_smp.prototypes import (class_scores, density, relabel, select_prototypes, separation, threshold,
                                       walk)

S = torch.tensor([[1.0, 0.2, 0.5], [0.2, 1.0, 0.8], [0.5, 0.8, 1.0]])


# -- eq. 5-9 by hand --------------------------------------------------------------------------


@pytest.mark.parametrize("quantile, expected", [(0.0, 0.2), (0.4, 0.5), (0.6, 0.5), (0.8, 0.8), (1.0, 0.8)])
def test_threshold_is_a_rank_of_the_sorted_off_diagonal(quantile, expected):
    # off-diagonal ascending: .2 .2 .5 .5 .8 .8 ; position floor(q * 5)
    assert threshold(S, quantile).item() == pytest.approx(expected)


@pytest.mark.parametrize("quantile", [0.0, 0.13, 0.4, 0.6, 0.999, 1.0])
def test_threshold_is_the_sorted_entry_on_random_similarities_with_ties(quantile):
    generator = torch.Generator().manual_seed(2)
    s = torch.randint(0, 7, (30, 30), generator=generator).float() / 7  # many ties
    off = torch.sort(s[~torch.eye(30, dtype=torch.bool)]).values
    assert threshold(s, quantile).item() == off[int(np.floor(quantile * (len(off) - 1)))].item()


def test_density_counts_signs_with_sign_zero_for_ties():
    rho = density(S, torch.tensor(0.5))
    # row 0: +1 (self) -1 (.2) 0 (.5 == S_c); row 1: +1 -1 +1; row 2: 0 +1 +1
    assert rho.tolist() == [0.0, 1.0, 2.0]


def test_eta_both_branches():
    rho = torch.tensor([0.0, 1.0, 2.0])
    eta = separation(S, rho)
    # eta_0 = max(S_01, S_02) over denser j = .5 ; eta_1 = S_12 = .8 ; densest: min_j S_2j = .5
    assert eta.tolist() == pytest.approx([0.5, 0.8, 0.5])


def test_eta_ties_at_the_maximum():
    s = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.3], [0.1, 0.3, 1.0]])
    rho = torch.tensor([2.0, 2.0, 0.0])
    # literal eq. 7: 0 and 1 tie at rho_max and both take the min branch (.1, .3), so two
    # near-copies (S_01 = .9) both pass eta < 0.95; 2: max over the denser 0 and 1 = .3
    assert separation(s, rho, ties="paper").tolist() == pytest.approx([0.1, 0.3, 0.3])
    # ties broken by sample order: only 0 is the densest; 1 compares with 0 (.9)
    assert separation(s, rho, ties="order").tolist() == pytest.approx([0.1, 0.9, 0.3])
    # never S_ii = 1: the max runs over other samples only
    assert separation(S, torch.tensor([0.0, 1.0, 2.0]), ties="order").tolist() == pytest.approx([0.5, 0.8, 0.5])


def test_walk_keeps_eta_below_threshold_in_density_order():
    rho = torch.tensor([0.0, 1.0, 2.0])
    eta = torch.tensor([0.5, 0.8, 0.5])
    assert walk(rho, eta, p=2).tolist() == [2, 1]
    assert walk(rho, eta, p=2, eta_max=0.6).tolist() == [2, 0]  # 1 is too close to a denser sample
    assert walk(rho, eta, p=5, eta_max=0.6).tolist() == [2, 0, 1]  # fallback fills up by density


def test_walk_fallback_when_none_qualifies():
    rho = torch.tensor([3.0, 1.0, 2.0, 2.0])
    eta = torch.tensor([0.99, 0.97, 0.98, 0.96])
    assert walk(rho, eta, p=2).tolist() == [0, 2]  # densest first, ties in sample order


def test_walk_does_not_pick_the_highest_eta():
    rho = torch.tensor([4.0, 3.0, 2.0, 1.0])
    eta = torch.tensor([0.2, 0.99, 0.9, 0.1])
    assert walk(rho, eta, p=2).tolist() == [0, 2]


def test_sigma_is_the_mean_not_the_max():
    e1, e2 = torch.eye(2)
    class_a = torch.stack([e1, -e1])  # similarities 1 and -1: mean 0, max 1
    class_b = torch.stack([0.6 * e1 + 0.8 * e2, 0.6 * e1 - 0.8 * e2])  # 0.6 and 0.6
    scores = class_scores(e1[None], [class_a, class_b])
    assert scores.tolist()[0] == pytest.approx([0.0, 0.6])
    y_hat, margin = relabel(scores, torch.tensor([0]))
    assert y_hat.tolist() == [1] and margin.tolist() == pytest.approx([0.6])


def test_argmax_margin_and_the_confidence_rule():
    scores = torch.tensor([[0.50, 0.55, 0.1], [0.50, 0.60, 0.2], [0.3, 0.2, 0.1]])
    noisy = torch.tensor([0, 0, 0])
    y_hat, margin = relabel(scores, noisy)
    assert y_hat.tolist() == [1, 1, 0] and margin.tolist() == pytest.approx([0.05, 0.10, 0.0])
    y_hat, _ = relabel(scores, noisy, change_margin=0.15)  # change only if 15% above sigma_y
    assert y_hat.tolist() == [0, 1, 0]


def test_class_without_prototypes_is_never_chosen():
    scores = class_scores(torch.tensor([[-1.0, 0.0]]), [torch.tensor([[1.0, 0.0]]), torch.zeros(0, 2)])
    assert scores[0, 1] == -torch.inf and relabel(scores, torch.tensor([1]))[0].item() == 0


def sigma_by_definition(features, prototypes, similarity):
    """eq. 8 written out: the mean over each class's prototypes of the per-pair similarity."""
    columns = []
    for protos in prototypes:
        if len(protos) == 0:
            columns.append(torch.full((len(features),), -torch.inf, dtype=torch.float64))
        elif similarity == "cosine":
            columns.append((F.normalize(features.double(), dim=1) @ F.normalize(protos.double(), dim=1).T).mean(1))
        else:
            columns.append(-torch.cdist(features.double(), protos.double()).mean(1))
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk", [7, 65536])
def test_class_scores_equal_eq8_written_out_on_random_data(similarity, chunk):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(50, 16, generator=generator) * torch.rand(50, 1, generator=generator) * 10
    sizes = [8, 0, 3, 1, 0, 8]  # empty classes included
    prototypes = [torch.randn(n, 16, generator=generator) for n in sizes]
    fast = class_scores(features, prototypes, similarity, chunk=chunk)
    exact = sigma_by_definition(features, prototypes, similarity)
    assert torch.equal(torch.isinf(fast), torch.isinf(exact))
    assert torch.allclose(fast.double()[:, [0, 2, 3, 5]], exact[:, [0, 2, 3, 5]], atol=1e-5)
    noisy = torch.randint(0, 6, (50,), generator=generator)
    assert torch.equal(relabel(fast, noisy)[0], relabel(exact, noisy)[0])


def two_cluster_toy(seed=0, per_cluster=40, k=5, flip=0.3):
    """Each class has two clusters that share the class's direction (cosine ~0.65 between
    siblings, ~0.1 across classes, ~0.96 within a cluster), like the pooled features of a
    trained network; 30% of labels flipped uniformly to other classes."""
    rng = np.random.default_rng(seed)
    dim = 6 * k + 3 * 2 * k
    centres = np.zeros((2 * k, dim))
    for j in range(2 * k):
        centres[j, 6 * (j // 2): 6 * (j // 2) + 6] = 1.0  # the class direction
        centres[j, 6 * k + 3 * j: 6 * k + 3 * j + 3] = 1.2  # the cluster's own direction
    true = np.repeat(np.arange(k), 2 * per_cluster)
    features = np.maximum(centres[np.repeat(np.arange(2 * k), per_cluster)] + 0.15 * rng.normal(size=(len(true), dim)), 0)
    noisy = true.copy()
    flipped = rng.choice(len(true), size=int(flip * len(true)), replace=False)
    noisy[flipped] = (true[flipped] + rng.integers(1, k, size=len(flipped))) % k
    return torch.tensor(features, dtype=torch.float32), torch.tensor(noisy), torch.tensor(true)


@pytest.mark.parametrize("method, p", [("density", 2), ("density", 8), ("kmeans++", 2), ("density_euclidean", 2),
                                       ("density_euclidean", 8)])
def test_correction_recovers_true_labels_on_two_clusters_per_class(method, p):
    for seed in range(3):
        features, noisy, true = two_cluster_toy(seed)
        prototypes = [select_prototypes(features[noisy == c], p, quantile=0.4, method=method) for c in range(5)]
        y_hat, _ = relabel(class_scores(features, prototypes), noisy)
        assert (noisy == true).float().mean() < 0.75
        assert (y_hat == true).float().mean() > 0.98


def test_euclidean_similarity_also_recovers_labels():
    features, noisy, true = two_cluster_toy(seed=1)
    prototypes = [select_prototypes(features[noisy == c], 2, 0.4, similarity="euclidean") for c in range(5)]
    y_hat, _ = relabel(class_scores(features, prototypes, similarity="euclidean"), noisy)
    assert (y_hat == true).float().mean() > 0.98


# -- the loss and per-sample state ------------------------------------------------------------


def fake_run(corrected, alpha=0.5, start_epoch=2):
    options = {"alpha": alpha, "start_epoch": start_epoch, "samples_per_class": 3, "agreeing_candidates": False}
    return SimpleNamespace(options=options, state={"corrected": corrected}, scratch={}, device=torch.device("cpu"),
                           harvest=lambda indices, values: None)  # not harvesting


def test_loss_reads_pseudo_labels_by_sample_index_not_batch_position():
    torch.manual_seed(0)
    corrected = torch.tensor([4, 3, 2, 1, 0, 4, 3, 2])
    indices = torch.tensor([6, 1, 7, 0])  # a shuffled batch
    logits, labels = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    loss = noisybench_loss(fake_run(corrected), logits, torch.zeros(4, 2), labels, indices, epoch=2)
    by_hand = sum(
        0.5 * -F.log_softmax(logits[b], 0)[labels[b]] + 0.5 * -F.log_softmax(logits[b], 0)[corrected[indices[b]]]
        for b in range(4)
    ) / 4
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    before = noisybench_loss(fake_run(corrected), logits, torch.zeros(4, 2), labels, indices, epoch=1)
    assert before.item() == pytest.approx(F.cross_entropy(logits, labels).item())  # alpha = 0 before start


def test_a_class_smaller_than_m_gives_all_its_samples():
    run = SimpleNamespace(noisy_labels=torch.tensor([0, 0, 1, 1, 1, 1, 1]), config={"setting": "noisy"},
                          options={"samples_per_class": 3, "network_candidates": False}, num_train=7,
                          state={"corrections": 0})
    rng = np.random.default_rng(0)
    assert candidates(run, 0, rng).tolist() == [0, 1]
    chosen = candidates(run, 1, rng)
    assert len(chosen) == 3 and set(chosen) <= {2, 3, 4, 5, 6}


# -- in real runs -----------------------------------------------------------------------------


class Probe:
    """Counts feature passes and checks the model is training whenever a batch is."""

    def __init__(self):
        self.passes = []
        self.eval_batches = 0

    @hookimpl
    def noisybench_setup(self, run):
        predict = run.predict  # extract_features passes through it too

        def counted(indices=None, *args, **kwargs):
            self.passes.append((run.epoch, None if indices is None else len(indices)))
            return predict(indices, *args, **kwargs)

        run.predict = counted

    @hookimpl(tryfirst=True)
    def noisybench_loss(self, run):
        self.eval_batches += not run.model.training


# eval_pass: one pass per correcting epoch, and one after the last for the final model's labels
@pytest.mark.parametrize("source, passes", [("eval_pass", [(2, None), (3, None), (4, None), (4, None)]),
                                            ("train_pass", [])])
def test_feature_passes_per_correcting_epoch(tmp_path, source, passes):
    probe = Probe()
    m = run_digits(tmp_path, "epochs=4", "noise=symmetric:0.4", f"smp.feature_source={source}", "smp.start_epoch=2",
                   "smp.max_changed=null", method="smp", plugins=[probe])
    assert probe.passes == passes
    assert probe.eval_batches == 0  # the model is back in train mode after every extraction
    assert m["labels"]["corrected_accuracy"] is not None
    history = {h["epoch"]: h for h in m["history"]}
    for epoch in (2, 3):  # every correction accepted (max_changed=null): y_hat's accuracy is the labels'
        assert history[epoch]["smp_yhat_accuracy"] == history[epoch]["label_accuracy"]
        assert 0 < history[epoch]["smp_argmax_accuracy"] < 1 and 0 < history[epoch]["smp_knn_accuracy"] < 1
    assert history[4]["smp_final_yhat_accuracy"] == history[4]["label_accuracy"]  # the final model's labels
    assert "smp_yhat_accuracy" not in history[1] and "smp_final_yhat_accuracy" not in history[3]
    assert {"features", "prototypes", "relabel"} <= set(m["efficiency"]["phase_seconds"])


def test_smp_lifts_label_accuracy_on_digits(tmp_path):
    m = run_digits(tmp_path, "epochs=10", "noise=symmetric:0.4", "seed=1", method="smp")
    labels = m["labels"]
    assert labels["corrected_accuracy"] > labels["noisy_accuracy"] + 0.2
    start = next(h["smp_start_epoch"] for h in m["history"] if "smp_start_epoch" in h)  # auto: once ready
    assert 2 <= start <= 6
    history = [h["label_accuracy"] for h in m["history"]]
    first = next(i for i, value in enumerate(history) if value is not None)  # a refused correction publishes none
    assert first >= start - 1 and history[first] == labels["corrected_accuracy_initial"]
    assert m["detection"]["auc"] > 0.9
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert (samples["corrected_label"] != samples["noisy_label"]).mean() == pytest.approx(labels["changed_fraction"])
    per_class = pd.read_csv(tmp_path / "label_accuracy_per_class.csv")
    assert list(per_class["class"]) == list(range(10)) and per_class["samples"].sum() == 1078
    assert (per_class["corrected_final"] * per_class["samples"]).sum() / 1078 == pytest.approx(labels["corrected_accuracy"])


def test_verify_setting_draws_prototypes_from_trusted_samples(tmp_path):
    seen = {}

    class Spy:
        @hookimpl(trylast=True)
        def noisybench_epoch_start(self, run, epoch):
            import noisybench_smp

            rng = np.random.default_rng(0)
            seen["candidates"] = np.concatenate([noisybench_smp.candidates(run, c, rng) for c in range(10)])
            seen["trusted"] = run.trusted_indices().numpy()

    run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "setting=verify", method="smp", plugins=[Spy()])
    assert len(seen["candidates"]) == len(seen["trusted"]) and set(seen["candidates"]) == set(seen["trusted"])


def test_bad_option_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="smp.feature_source='both'"):
        run_digits(tmp_path, "epochs=1", "smp.feature_source=both", method="smp")


def test_clean_setting_fine_tunes_after_smp(tmp_path):
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "setting=clean", "finetune.epochs=1",
                   "smp.start_epoch=2", "smp.max_changed=null", method="smp")
    assert [h["stage"] for h in m["history"]] == ["train", "train", "finetune"]
    assert m["labels"]["corrected_accuracy"] is not None and m["num_train"] == 970  # 10% held out clean


def test_smp_resumes_exactly(tmp_path):
    straight, resumed = resumed_like_straight(tmp_path, "smp", "epochs=3", "noise=symmetric:0.4", "smp.start_epoch=2")
    assert resumed["labels"]["corrected_accuracy_initial"] == straight["labels"]["corrected_accuracy_initial"]


# -- start_epoch=auto and the change guard ----------------------------------------------------


def test_readiness_by_hand():
    from noisybench_smp.readiness import latest_start, ready

    # 10 classes, chance 0.1: the last epoch must add at most 10% of the gain over chance
    assert not ready([0.5], 10, 0.1)  # one epoch: no curve yet
    assert not ready([0.5, 0.8], 10, 0.1)  # +0.30 of 0.70 gained: still rising fast
    assert ready([0.5, 0.8, 0.85], 10, 0.1)  # +0.05 <= 0.1 * 0.75
    assert not ready([0.1, 0.1, 0.1], 10, 0.1)  # flat at chance: learnt nothing, not ready
    assert not ready([None, None], 10, 0.1)  # no val split
    assert latest_start(15) == 8 and latest_start(4) == 3


def scripted_readiness(monkeypatch, curve):
    """smp sees ``curve`` as the val accuracies of the epochs so far, whatever the training gave."""
    import noisybench_smp
    from noisybench_smp.readiness import ready

    monkeypatch.setattr(noisybench_smp, "ready", lambda seen, classes, fraction: ready(curve[:len(seen)], classes,
                                                                                        fraction))


def test_smp_does_not_correct_a_model_that_is_not_ready(tmp_path, monkeypatch):
    """A val curve that keeps climbing (scripted): no correction before the latest start
    (half-way, epoch 3 of 4), where a model ready at once would have been corrected at epoch 2."""
    scripted_readiness(monkeypatch, [0.2, 0.4, 0.6, 0.8])
    m = run_digits(tmp_path, "epochs=4", "noise=symmetric:0.4", "smp.max_changed=null", method="smp")
    assert [h.get("smp_start_epoch") for h in m["history"]] == [None, None, 3, None]  # latest_start(4)
    assert [h["label_accuracy"] is None for h in m["history"]] == [True, True, False, False]


def scripted_corrections(monkeypatch, changed: float):
    """smp's correction proposes to change the first ``changed`` share of the labels (each to the
    next class), whatever the features say: the guard's input, set by hand."""
    import noisybench_smp

    def correct_labels(run, epoch, diagnostics_prefix="smp"):
        y_hat = run.noisy_labels.clone()
        count = int(round(changed * len(y_hat)))
        y_hat[:count] = (y_hat[:count] + 1) % run.num_classes
        return y_hat.to(run.device), torch.zeros(len(y_hat))

    monkeypatch.setattr(noisybench_smp, "correct_labels", correct_labels)


def test_the_change_guard_warns_and_with_max_changed_refuses(tmp_path, capsys, monkeypatch):
    """A correction that changes 55% of the labels (scripted): refused by default
    (max_changed=0.5), only reported with max_changed=null; 25% passes max_changed=0.3 silently."""
    scripted_corrections(monkeypatch, 0.55)
    warned = run_digits(tmp_path / "a", "epochs=1", "noise=symmetric:0.4", "smp.start_epoch=1",
                        "smp.max_changed=null", method="smp")
    assert any("of the final model changes 55.0%" in w and "more than half" in w for w in warned["labels"]["warnings"])
    assert warned["labels"]["changed_fraction"] == pytest.approx(0.55, abs=1e-3)  # kept: only reported
    assert "warning: smp: the correction of the final model changes" in capsys.readouterr().out
    default = run_digits(tmp_path / "b", "epochs=1", "noise=symmetric:0.4", "smp.start_epoch=1", method="smp")
    assert any("refused the correction of the final model" in w for w in default["labels"]["warnings"])
    assert any("refused the correction at epoch 1" in w for w in default["labels"]["warnings"])
    assert default["labels"]["changed_fraction"] is None  # every correction refused, the noisy labels kept
    scripted_corrections(monkeypatch, 0.25)
    strict = run_digits(tmp_path / "c", "epochs=1", "noise=symmetric:0.4", "smp.start_epoch=1",
                        "smp.max_changed=0.3", method="smp")
    assert strict["labels"]["warnings"] == [] and strict["labels"]["changed_fraction"] == pytest.approx(0.25, abs=1e-3)


# -- change_margin, agreeing_candidates and the departures, by hand -----------------------------


def test_change_margin_is_measured_above_the_least_similar_class():
    """Dense features put every sigma near 0.9. sigma = [0.90, 0.93, 0.85], label 0: above the
    floor 0.85 the new class scores 0.08 against 0.05, 60% higher: changed at margin 0.15 (the
    thesis's scale from zero asked 0.93 >= 1.15 * 0.90 and kept it); [0.90, 0.905, 0.85] is
    10% higher: kept. A shift or scaling of all scores changes no decision."""
    scores = torch.tensor([[0.90, 0.93, 0.85], [0.90, 0.905, 0.85], [0.20, 0.30, 0.10]])
    noisy = torch.tensor([0, 0, 0])
    y_hat, margin = relabel(scores, noisy, change_margin=0.15)
    assert y_hat.tolist() == [1, 0, 1] and margin.tolist() == pytest.approx([0.03, 0.005, 0.10], abs=1e-6)
    assert relabel(scores, noisy, change_margin=0.8)[0].tolist() == [0, 0, 1]  # 60%, 10%, 100% higher
    assert relabel(scores, noisy, change_margin=1.5)[0].tolist() == [0, 0, 0]
    for shifted in (scores - 0.7, 3 * scores, -torch.ones(3, 3) + scores):
        assert relabel(shifted, noisy, change_margin=0.15)[0].tolist() == [1, 0, 1]
    with_empty = torch.cat([scores, torch.full((3, 1), -torch.inf)], dim=1)  # a class without prototypes
    assert relabel(with_empty, noisy, change_margin=0.15)[0].tolist() == [1, 0, 1]


def unit(degrees):
    radians = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([radians.cos(), radians.sin()], dim=1).float()


def correction_run(features, noisy, logits=None, **options):
    """A run object with what ``correct_labels`` reads: features by hand, no training."""
    from contextlib import nullcontext

    from noisybench_smp import noisybench_config_defaults

    logged = {}
    logits = torch.zeros(len(noisy), int(noisy.max()) + 1) if logits is None else logits
    return SimpleNamespace(
        options={**noisybench_config_defaults(), **options}, config={"seed": 0, "setting": "noisy"},
        noisy_labels=noisy, num_classes=logits.shape[1], num_train=len(noisy), device=torch.device("cpu"),
        phase=lambda name: nullcontext(), harvest_end=lambda: None, predict=lambda dtype: (logits, features),
        log=logged.update, score_labels=logged.update, logged=logged)


# Class 0: true samples at 0-6 degrees, and three true-1 samples labelled 0 at 75-85 degrees, the
# densest of which class 0's walk (p = 2) takes as a prototype: its centre lies at ~40 degrees.
# Class 1: true samples at 88-92 degrees and one at 50, which the one-pass y_hat moves to class 0
# (sigma 0.81 against 0.77). The 75-85 samples get y_hat 1: without them class 0's redrawn
# prototypes lie at 0-6 degrees and the 50-degree sample keeps its right label (0.68 against 0.77).
DEGREES = [0, 2, 4, 6, 75, 80, 85, 88, 89, 90, 91, 92, 50]
NOISY = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
TRUE = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_agreeing_candidates_redraw_at_the_first_correction_from_the_agreeing_samples():
    from noisybench_smp import correct_labels

    features, options = unit(DEGREES), {"num_prototypes": 2, "samples_per_class": 100}
    one_pass, _ = correct_labels(correction_run(features, NOISY, **options), epoch=2)
    run = correction_run(features, NOISY, agreeing_candidates=True, **options)
    two_pass, _ = correct_labels(run, epoch=2)
    # by hand: the first y_hat is the one-pass one; the redraw takes each class's agreeing samples
    agreeing = one_pass == NOISY
    prototypes = [select_prototypes(features[(NOISY == c) & agreeing], 2, 0.4) for c in (0, 1)]
    assert two_pass.tolist() == relabel(class_scores(features, prototypes), NOISY)[0].tolist()
    assert two_pass.tolist() == TRUE and one_pass.tolist() != TRUE


def test_network_candidates_draw_only_where_the_network_gives_the_noisy_label():
    from noisybench_smp import correct_labels

    features = unit(DEGREES)
    logits = F.one_hot(torch.tensor(TRUE), 2).float()  # a network that knows the true labels
    run = correction_run(features, NOISY, logits=logits, network_candidates=True, num_prototypes=2)
    y_hat, _ = correct_labels(run, epoch=2)
    clean = [select_prototypes(features[(NOISY == c) & (torch.tensor(TRUE) == c)], 2, 0.4) for c in (0, 1)]
    assert y_hat.tolist() == relabel(class_scores(features, clean), NOISY)[0].tolist() == TRUE
    assert run.logged["smp_argmax_accuracy"].tolist() == TRUE  # scored by the core; the labels of the argmax


def test_centred_features_subtract_the_training_mean_before_every_similarity():
    from noisybench_smp import correct_labels

    features = unit(DEGREES) + torch.tensor([3.0, 3.0])  # a common offset: all cosines near 1
    centred = features - features.mean(dim=0)
    by_option, _ = correct_labels(correction_run(features, NOISY, centre_features=True), epoch=2)
    by_hand, _ = correct_labels(correction_run(centred, NOISY), epoch=2)
    plain, _ = correct_labels(correction_run(features, NOISY), epoch=2)
    assert by_option.tolist() == by_hand.tolist() and by_option.tolist() != plain.tolist()


def test_knn_labels_by_hand():
    from noisybench_smp.diagnostics import knn_labels

    features = unit([0, 1, 2, 3, 90, 91, 92, 93])
    noisy = torch.tensor([0, 1, 0, 0, 1, 0, 1, 1])  # 1 at 1 degree and 0 at 91: outvoted by their 3 neighbours
    assert knn_labels(features, noisy, k=3, chunk=3).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_larger_p_than_the_class_makes_every_candidate_a_prototype():
    """num_prototypes at or above the class sizes (7 and 6 here): every sample of a class is a
    prototype, so sigma_c is the mean cosine to all its members, the dot with the mean of its
    unit features. By hand: class 0's mean is 0.79 long at 35.0 degrees (its 75-85 members
    spread it), class 1's 0.97 at 83.6; the 50-degree sample scores 0.79·cos 15° = 0.76
    against 0.97·cos 33.6° = 0.81 and keeps its right label 1, which p = 2 moved to 0."""
    from noisybench_smp import correct_labels

    features = unit(DEGREES)
    y_hat, _ = correct_labels(correction_run(features, NOISY, num_prototypes=128), epoch=2)
    assert y_hat.tolist() == TRUE
    centres = torch.stack([F.normalize(features[NOISY == c], dim=1).mean(dim=0) for c in (0, 1)])
    assert centres.norm(dim=1).tolist() == pytest.approx([0.787, 0.967], abs=1e-3)
    assert y_hat.tolist() == (features @ centres.T).argmax(dim=1).tolist()
    p2, _ = correct_labels(correction_run(features, NOISY, num_prototypes=2), epoch=2)
    assert p2[-1] == 0


def test_agreeing_candidates_keep_the_earlier_filters_in_the_redraw():
    """With network_candidates too, the second drawing takes the samples that pass both: the
    network rejects the 0- and 2-degree samples (it says 1), the first y_hat gives them their label 0,
    and class 0's redrawn prototypes come from 4-6 degrees only (with 0-2 among them the margins differ)."""
    from noisybench_smp import correct_labels

    features, noisy = unit(DEGREES), NOISY
    network = torch.tensor(TRUE)
    network[:2] = 1
    options = {"logits": F.one_hot(network, 2).float(), "num_prototypes": 2, "samples_per_class": 100,
               "network_candidates": True}
    _, margin = correct_labels(correction_run(features, noisy, agreeing_candidates=True, **options), epoch=2)
    first, _ = correct_labels(correction_run(features, noisy, **options), epoch=2)
    assert first[:2].tolist() == [0, 0]  # the first y_hat agrees with the labels the network rejects
    agreeing = first == noisy

    def margins(mask):
        prototypes = [select_prototypes(features[(noisy == c) & mask], 2, 0.4) for c in (0, 1)]
        return relabel(class_scores(features, prototypes), noisy)[1]

    assert margin.tolist() == pytest.approx(margins(agreeing & (network == noisy)).tolist(), abs=1e-6)
    assert not torch.allclose(margins(agreeing), margin, atol=1e-4)  # the filter dropped: another answer


def test_num_prototypes_above_eight_takes_that_many():
    """Classes of 12: with p = 128 every member is a prototype, so sigma_c is the cosine with the mean
    of the class's unit features and the margin max sigma - sigma_y follows by hand; p = 8 differs."""
    from noisybench_smp import correct_labels

    features = unit(list(range(0, 36, 3)) + list(range(50, 98, 4)))
    noisy = torch.tensor([0] * 11 + [1] + [1] * 11 + [0])  # one wrong label in each class
    y_hat, margin = correct_labels(correction_run(features, noisy, num_prototypes=128, samples_per_class=100), epoch=2)
    sigma = features @ torch.stack([features[noisy == c].mean(dim=0) for c in (0, 1)]).T
    assert margin.tolist() == pytest.approx((sigma.max(dim=1).values - sigma[torch.arange(24), noisy]).tolist(), abs=1e-6)
    assert y_hat.tolist() == sigma.argmax(dim=1).tolist()
    _, eight = correct_labels(correction_run(features, noisy, num_prototypes=8, samples_per_class=100), epoch=2)
    assert not torch.allclose(eight, margin, atol=1e-4)


def test_a_refused_correction_trains_exactly_as_cross_entropy(tmp_path):
    """max_changed=0.01 refuses every correction of this 40% noise (each changes ~40%): the loss is then CE's, and the
    feature pass, the prototype draws and the diagnostics take nothing from the run's random stream."""
    common = ("epochs=2", "noise=symmetric:0.4")
    ce = run_digits(tmp_path / "ce", *common)
    smp = run_digits(tmp_path / "smp", *common, "smp.start_epoch=2", "smp.max_changed=0.01", method="smp")
    assert len(smp["labels"]["warnings"]) == 2  # epoch 2 and the final model: both refused
    assert [h["train_loss"] for h in smp["history"]] == [h["train_loss"] for h in ce["history"]]
    assert smp["test"]["accuracy"] == ce["test"]["accuracy"]
    losses = [pd.read_csv(tmp_path / name / "samples.csv")["train_loss"] for name in ("ce", "smp")]
    assert losses[0].equals(losses[1])
