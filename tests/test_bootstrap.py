"""Bootstrapping (Reed et al. 2015): soft and hard targets by hand, Patrini et al.'s Keras form, a run."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_digits
from noisybench_bootstrap import bootstrap_loss, noisybench_check_options

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v - max(row)) for v in row]
    return [e / sum(exps) for e in exps]


def keras_boot(y_pred, y_true, beta, hard):
    """giorgiop/loss-correction's boot_soft / boot_hard, line by line (Keras epsilon 1e-7)."""
    y_pred = y_pred / y_pred.sum(dim=-1, keepdim=True)
    y_pred = y_pred.clamp(1e-7, 1 - 1e-7)
    own = torch.nn.functional.one_hot(y_pred.argmax(1), y_pred.shape[1]).to(y_pred.dtype) if hard else y_pred
    return -((beta * y_true + (1 - beta) * own) * y_pred.log()).sum(dim=-1)


def test_soft_and_hard_by_hand():
    z, y = [[2.0, 0.5, -1.0], [0.3, -0.2, 0.9]], [1, 0]
    p = [softmax(row) for row in z]
    soft = [-sum((0.95 * (k == y[i]) + 0.05 * p[i][k]) * math.log(p[i][k]) for k in range(3)) for i in range(2)]
    hard = [-sum((0.8 * (k == y[i]) + 0.2 * (k == max(range(3), key=p[i].__getitem__))) * math.log(p[i][k])
                 for k in range(3)) for i in range(2)]
    logits, labels = torch.tensor(z, dtype=torch.float64), torch.tensor(y)
    assert bootstrap_loss(logits, labels, "soft", 0.95).tolist() == pytest.approx(soft, rel=1e-12)
    assert bootstrap_loss(logits, labels, "hard", 0.8).tolist() == pytest.approx(hard, rel=1e-12)


def test_soft_target_carries_the_gradient_as_in_the_keras_code():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.3, -0.2, 0.9], [5.0, -4.0, 1.0]], dtype=torch.float64,
                          requires_grad=True)
    labels = torch.tensor([1, 0, 2])
    one_hot = torch.nn.functional.one_hot(labels, 3).to(torch.float64)
    for kind, beta in (("soft", 0.95), ("hard", 0.8)):
        ours = bootstrap_loss(logits, labels, kind, beta).sum()
        theirs = keras_boot(logits.softmax(1), one_hot, beta, kind == "hard").sum()
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
        mine, = torch.autograd.grad(ours, logits)
        keras, = torch.autograd.grad(theirs, logits)
        assert torch.allclose(mine, keras, rtol=1e-10)
        assert torch.autograd.gradcheck(lambda v: bootstrap_loss(v, labels, kind, beta).mean(), (logits,))
    # soft's target term adds the gradient of (1 - beta) * entropy: not the stop-gradient pseudo-label form
    detached = -((0.95 * one_hot + 0.05 * logits.softmax(1).detach()) * logits.log_softmax(1)).sum()
    assert not torch.allclose(torch.autograd.grad(detached, logits)[0], torch.autograd.grad(
        bootstrap_loss(logits, labels, "soft", 0.95).sum(), logits)[0])


def test_the_clamp_at_p_to_0_and_p_to_1_and_one_class():
    far = torch.tensor([[40.0, -40.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = bootstrap_loss(far, torch.tensor([1]), "hard", 0.8)  # p_1 ~ e^-80 is clamped to 1e-7
    assert loss.item() == pytest.approx(keras_boot(far.softmax(1), torch.tensor([[0.0, 1.0, 0.0]]), 0.8, True).item())
    assert loss.item() == pytest.approx(-0.8 * math.log(1e-7) - 0.2 * math.log(1 - 1e-7), rel=1e-9)
    loss.backward()
    assert torch.isfinite(far.grad).all() and far.grad[0, 1].item() == 0.0  # clamped: no push on p_1
    single = torch.tensor([[2.0]], dtype=torch.float64)
    assert bootstrap_loss(single, torch.tensor([0]), "soft", 0.95).item() == pytest.approx(-math.log(1 - 1e-7))


def test_beta_auto_is_the_papers_per_kind():
    for kind, beta in (("soft", 0.95), ("hard", 0.8)):
        options = {"kind": kind, "beta": "auto"}
        noisybench_check_options(options=options)
        assert options["beta"] == beta
    for bad, key in (({"kind": "medium", "beta": "auto"}, "bootstrap.kind"), ({"kind": "soft", "beta": 1.5},
                                                                              "bootstrap.beta")):
        with pytest.raises(ConfigError, match=key):
            noisybench_check_options(options=bad)


def test_bootstrap_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=6", "lr_schedule.step_every=4", method="bootstrap")
    assert record["config"]["bootstrap"] == {"kind": "soft", "beta": 0.95}
    assert record["test"]["accuracy"] >= 0.90
