"""Forward and backward loss correction (Patrini et al. 2017): the losses, the transition
matrix (known, from a file, estimated by anchor points) on cases computed by hand, and runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight, run_digits
from noisybench_backward import inverse
from noisybench_transition.correction import noisybench_check_options
from noisybench_transition.losses import EPSILON, backward_loss, clipped_probabilities, forward_loss, label_noise_posterior
from noisybench_transition.matrix import anchor_transition, estimation_error, known_transition, read_transition

from noisybench.errors import ConfigError
from noisybench.noise import parse_noise

T3 = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])


def forward_of(logits, labels, t):
    return forward_loss(clipped_probabilities(logits), labels, t)


def backward_of(logits, labels, t_inv):
    return backward_loss(clipped_probabilities(logits), labels, t_inv)


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_forward_and_backward_losses_by_hand():
    z, y = [[1.0, 0.0, -1.0], [0.2, 0.3, 2.0]], [0, 2]
    p = [softmax(row) for row in z]  # no clip acts: every p is inside [1e-7, 1 - 1e-7]
    forward = sum(-math.log(sum(p[n][i] * T3[i][y[n]] for i in range(3))) for n in range(2)) / 2
    t_inv = np.linalg.inv(T3)  # the authors' np.linalg.inv
    backward = sum(-sum(t_inv[y[n]][j] * math.log(p[n][j]) for j in range(3)) for n in range(2)) / 2
    logits, labels = torch.tensor(z, dtype=torch.float64), torch.tensor(y)
    assert forward_of(logits, labels, torch.tensor(T3)).item() == pytest.approx(forward, rel=1e-12)
    assert backward_of(logits, labels, inverse(torch.tensor(T3))).item() == pytest.approx(backward, rel=1e-12)
    # T = I: both are cross-entropy
    assert forward_of(logits, labels, torch.eye(3, dtype=torch.float64)).item() == pytest.approx(
        sum(-math.log(p[n][y[n]]) for n in range(2)) / 2, rel=1e-12)


@pytest.mark.parametrize("z", [[0.3, -0.2, 1.1], [-20.0, 5.0, 5.0], [30.0, 0.0, 0.0], [0.0, 30.0, 0.0]],
                         ids=["inside", "p_label_to_0", "p_label_to_1", "p_other_to_1"])
def test_gradients_match_finite_differences_at_and_inside_the_clip(z):
    logits = torch.tensor([z], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0])
    t = torch.tensor(T3)
    assert torch.autograd.gradcheck(lambda x: forward_of(x, labels, t), (logits,))
    assert torch.autograd.gradcheck(lambda x: backward_of(x, labels, inverse(t)), (logits,))


def test_the_clip_bounds_both_losses_where_p_reaches_0_or_1():
    t = torch.tensor(T3)
    top = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # p = (1, ~1e-13, ~1e-13)
    clipped = [1 - EPSILON, EPSILON, EPSILON]
    expected = -math.log(sum(clipped[i] * T3[i][1] for i in range(3)))
    loss = forward_of(top, torch.tensor([1]), t)
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-12) and torch.equal(top.grad, torch.zeros(1, 3, dtype=torch.float64))
    t_inv = np.linalg.inv(T3)  # negative entries: unbounded below without the clip, bounded with it
    expected = -sum(t_inv[1][j] * math.log(clipped[j]) for j in range(3))
    assert backward_of(top, torch.tensor([1]), inverse(t)).item() == pytest.approx(expected, rel=1e-12)
    one_class = torch.tensor([[4.0]], dtype=torch.float64, requires_grad=True)
    for loss in (forward_of(one_class, torch.tensor([0]), torch.ones(1, 1, dtype=torch.float64)),
                 backward_of(one_class, torch.tensor([0]), torch.ones(1, 1, dtype=torch.float64))):
        (grad,) = torch.autograd.grad(loss, one_class)
        assert loss.item() == pytest.approx(-math.log(1 - EPSILON), rel=1e-9) and grad.item() == 0.0


def test_known_transition_of_each_noise_kind():
    sym = known_transition(parse_noise("symmetric:0.4"), 4, "digits", [])
    assert np.allclose(sym, [[0.6 if i == j else 0.4 / 3 for j in range(4)] for i in range(4)])  # build_uniform_P
    pair = known_transition(parse_noise("asymmetric:0.3"), 3, "digits", [])
    assert np.allclose(pair, [[0.7, 0.3, 0], [0, 0.7, 0.3], [0.3, 0, 0.7]])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    mapped = known_transition(parse_noise("mapped:0.4"), 10, "cifar10", names)
    assert mapped[9, 1] == mapped[2, 0] == mapped[3, 5] == mapped[5, 3] == mapped[4, 7] == pytest.approx(0.4)
    assert mapped[0, 0] == mapped[1, 1] == mapped[6, 6] == 1.0 and np.allclose(mapped.sum(axis=1), 1)
    from noisybench.noise import NoiseSpec
    uniform = known_transition(NoiseSpec("uniform", 0.4), 4, "digits", [])
    assert np.allclose(uniform, [[0.7 if i == j else 0.1 for j in range(4)] for i in range(4)])
    with pytest.raises(ConfigError, match="not known"):
        known_transition(parse_noise("instance:0.4"), 4, "digits", [])


def test_anchor_points_recover_a_known_transition_matrix():
    """Per class, 100 samples whose output is T's row (the noisy posterior of a clean sample)
    and 12 outliers (p = 0.99, more than the top 3%): the 97th-percentile rule leaves the
    outliers out and finds T; the plain arg-max (percentile 100) picks the outliers."""
    outlier = np.full((3, 3), 0.005) + np.eye(3) * 0.985
    probs = np.concatenate([np.repeat(T3, 100, axis=0), np.repeat(outlier, 12, axis=0)])
    assert np.allclose(anchor_transition(probs, 97.0), T3)
    assert np.allclose(anchor_transition(probs, 100.0), outlier)
    # percentile 'higher' on 11 values 0, 0.1, ..., 1: the 90th is 0.9, so 0.9 and 1 are left out
    column = np.linspace(0, 1, 11)
    two = np.stack([column, 1 - column], axis=1)
    assert np.allclose(anchor_transition(two, 90.0)[0], two[8])
    assert estimation_error(np.eye(2), np.array([[0.5, 0.5], [0.0, 1.0]])) == pytest.approx(0.5)  # |0.5|+|0.5| over 2


def test_noise_score_is_the_posterior_that_the_label_is_wrong():
    logits = clipped_probabilities(torch.tensor([[1.0, 0.0, -1.0]]))
    p = softmax([1.0, 0.0, -1.0])
    expected = 1 - p[1] * T3[1][1] / sum(p[i] * T3[i][1] for i in range(3))
    assert label_noise_posterior(logits, torch.tensor([1]), torch.tensor(T3).float()).item() == pytest.approx(expected, rel=1e-6)
    assert label_noise_posterior(logits, torch.tensor([1]), torch.eye(3)).item() == 0.0  # no noise assumed


def test_a_transition_file_is_read_and_checked(tmp_path):
    good = tmp_path / "t.csv"
    good.write_text("0.7,0.2,0.1\n0.1,0.8,0.1\n\n0.25,0.25,0.5\n")
    assert np.allclose(read_transition(good, 3), T3)
    bad = tmp_path / "bad.csv"
    bad.write_text("0.7,0.2,0.1\n0.1,0.8,x\n0.25,0.25,0.5\n")
    with pytest.raises(ConfigError, match="bad.csv, line 2"):
        read_transition(bad, 3)
    bad.write_text("0.7,0.2,0.1\n0.1,0.8,0.2\n0.25,0.25,0.5\n")
    with pytest.raises(ConfigError, match="line 2: expected 3 non-negative numbers summing to 1"):
        read_transition(bad, 3)
    with pytest.raises(ConfigError, match="3 rows, expected one per class \\(2\\)"):
        read_transition(good, 2)


def test_options_resolve_auto_and_name_bad_keys():
    options = {"transition": "estimate", "transition_file": None, "estimate_epochs": "auto",
               "anchor_percentile": "auto", "restart": False}
    step = {"name": "step", "step_every": 0, "milestones": [80, 120]}  # the authors' CIFAR-100 decays
    noisybench_check_options(options=options, config={"method": "forward", "dataset": "cifar100", "epochs": 150,
                                                      "lr_schedule": step})
    assert options["estimate_epochs"] == 81 and options["anchor_percentile"] == 100.0  # a first model past a decay
    for schedule, epochs, expected in (({"name": "step", "step_every": 10, "milestones": None}, 15, 11),
                                       ({"name": "step", "step_every": 10, "milestones": None}, 10, 6),
                                       ({"name": "cosine", "step_every": 10, "milestones": None}, 15, 10)):
        auto = {**options, "estimate_epochs": "auto"}
        noisybench_check_options(options=auto, config={"method": "forward", "dataset": "digits", "epochs": epochs,
                                                       "lr_schedule": schedule})
        assert auto["estimate_epochs"] == expected
    for change, message in (({"transition": "oracle"}, "forward.transition"),
                            ({"transition": "known"}, "needs class-conditional synthetic noise"),
                            ({"transition": "file"}, "forward.transition_file"),
                            ({"estimate_epochs": 10}, "forward.estimate_epochs"),
                            ({"restart": "yes"}, "forward.restart"),
                            ({"anchor_percentile": 0}, "forward.anchor_percentile")):
        bad = {**options, "estimate_epochs": 4, **change}
        with pytest.raises(ConfigError, match=message):
            noisybench_check_options(options=bad, config={"method": "forward", "dataset": "digits", "epochs": 10,
                                                          "noise": "instance:0.2"})


def test_forward_estimates_t_restarts_and_resumes_exactly(tmp_path):
    """T is estimated at the start of epoch 2 after one epoch of cross-entropy and the network
    restarts from its first weights; a run killed at the start of epoch 2 (before the
    estimate, the first weights held nowhere but in memory) resumes as if never stopped."""
    straight, _ = resumed_like_straight(tmp_path, "forward", "epochs=3", "noise=symmetric:0.4",
                                        "forward.estimate_epochs=1", "forward.restart=true", crash_at=2)
    estimated = [h for h in straight["history"] if "transition_matrix" in h]
    assert [h["epoch"] for h in estimated] == [2] and estimated[0]["transition_source"] == "estimate"
    matrix = np.array(estimated[0]["transition_matrix"])
    assert np.allclose(matrix.sum(axis=1), 1, atol=1e-5) and (matrix > 0).all()
    truth = known_transition(parse_noise("symmetric:0.4"), 10, "digits", [])
    assert estimated[0]["transition_error"] == pytest.approx(estimation_error(matrix, truth), abs=1e-5)


# Backward's loss weights the other classes' log-probabilities by T⁻¹'s negative entries: with
# SGD at digits' lr 0.05 it memorises the flipped labels within a few epochs; with an adaptive
# optimiser, as the authors' MNIST runs (Adagrad), it learns. Adam here (adamw, no decay).
ADAM = ("optimizer.name=adamw", "optimizer.lr=0.001", "optimizer.weight_decay=0.0")


@pytest.mark.parametrize("method, options", [("forward", ()), ("backward", ADAM)])
def test_correction_with_the_known_transition_learns(tmp_path, method, options):
    record = run_digits(tmp_path, "noise=symmetric:0.4", f"{method}.transition=known", *options,  # digits' 15 epochs
                        method=method)
    assert record["test"]["accuracy"] >= 0.9
    first = record["history"][0]
    assert first["transition_source"] == "known" and first["transition_error"] == 0.0
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert samples["noise_score"].between(0, 1).all() and (samples["flagged"] == (samples["noise_score"] > 0.5)).all()


def test_under_several_processes_every_samples_score_is_kept():
    """With several processes each scores its own batch and ``run.collect`` (the core's gather,
    run under two real processes in test_elr.py; T̂ comes from ``run.predict``, whose gather
    test_distributed.py checks) brings the other processes' rows: a stand-in collect adds
    another process's two rows, which must land in the state beside this process's own."""
    from types import SimpleNamespace

    from noisybench_forward import noisybench_loss

    other = torch.tensor([0, 3]), torch.tensor([0.25, 0.75])

    def collect(indices, values):
        return torch.cat([indices, other[0]]), torch.cat([values, other[1]])

    state = {"transition": torch.tensor(T3), "noise_score": torch.zeros(5)}
    run = SimpleNamespace(state=state, scratch={}, collect=collect, accelerator=SimpleNamespace(num_processes=2))
    logits, labels, mine = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([2, 1]), torch.tensor([1, 4])
    loss = noisybench_loss(run=run, logits=logits, labels=labels, indices=mine)
    p = clipped_probabilities(logits)
    assert loss.item() == pytest.approx(forward_loss(p, labels, torch.tensor(T3).float()).item())
    own = label_noise_posterior(p, labels, torch.tensor(T3).float())
    assert state["noise_score"].tolist() == pytest.approx([0.25, own[0].item(), 0.0, 0.75, own[1].item()])
