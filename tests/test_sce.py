"""SCE (Wang et al. 2019): CE + RCE by hand, the authors' clamps, their α/β per dataset, a run."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_digits
from noisybench_sce import CODE_LOG_ZERO, noisybench_check_options, reverse_cross_entropy, sce_loss

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v - max(row)) for v in row]
    return [e / sum(exps) for e in exps]


def authors_sce(logits, labels, alpha, beta):
    """The authors' SCELoss (SCELoss-Reproduce loss.py) written out: CE, then RCE with p clamped at
    1e-7 and the one-hot label at 1e-4."""
    ce = torch.nn.functional.cross_entropy(logits, labels)
    p = logits.softmax(dim=1).clamp(min=1e-7, max=1.0)
    one_hot = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype).clamp(min=1e-4, max=1.0)
    return alpha * ce + beta * (-(p * one_hot.log()).sum(dim=1)).mean()


def test_sce_by_hand():
    z, y = [[2.0, 0.5, -1.0], [0.0, 0.0, 0.0]], [0, 2]
    p = [softmax(row) for row in z]
    ce = [-math.log(p[i][y[i]]) for i in range(2)]
    rce = [-math.log(1e-4) * sum(p[i][k] for k in range(3) if k != y[i]) for i in range(2)]
    logits, labels = torch.tensor(z, dtype=torch.float64), torch.tensor(y)
    assert reverse_cross_entropy(logits, labels, CODE_LOG_ZERO).tolist() == pytest.approx(rce, rel=1e-12)
    loss = sce_loss(logits, labels, 0.1, 1.0, CODE_LOG_ZERO)
    assert loss.item() == pytest.approx(0.1 * sum(ce) / 2 + sum(rce) / 2, rel=1e-12)
    assert loss.item() == pytest.approx(authors_sce(logits, labels, 0.1, 1.0).item(), rel=1e-12)
    # the paper's A = -4 scales RCE by 4 / 9.21
    assert sce_loss(logits, labels, 0.0, 1.0, -4.0).item() == pytest.approx(4 / 9.210340371976182 * sum(rce) / 2)


def test_sce_clamps_and_edges_as_the_authors_code():
    # p -> 0 for the label and for one other class (clamped at 1e-7 in RCE), p -> 1, one class
    for z, y in (([[30.0, 0.0, -30.0]], [1]), ([[30.0, 0.0, -30.0]], [0]), ([[40.0, -40.0, -40.0]], [0]),
                 ([[1.5]], [0])):
        logits, labels = torch.tensor(z, dtype=torch.float64, requires_grad=True), torch.tensor(y)
        loss = sce_loss(logits, labels, 0.1, 1.0, CODE_LOG_ZERO)
        assert loss.item() == pytest.approx(authors_sce(logits, labels, 0.1, 1.0).item(), rel=1e-9, abs=1e-12)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
    confident = torch.tensor([[40.0, -40.0, -40.0]], dtype=torch.float64, requires_grad=True)
    rce = reverse_cross_entropy(confident, torch.tensor([0]), CODE_LOG_ZERO)
    assert rce.item() == pytest.approx(-CODE_LOG_ZERO * 2e-7)  # both others at the 1e-7 floor
    rce.backward()
    assert confident.grad.abs().max().item() == 0.0  # below the floor RCE no longer pushes
    single = torch.tensor([[1.5]], dtype=torch.float64)
    assert sce_loss(single, torch.tensor([0]), 0.1, 1.0, CODE_LOG_ZERO).item() == 0.0


def test_sce_gradient_matches_finite_differences():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.3, -0.2, 0.9], [5.0, -4.0, 1.0]], dtype=torch.float64,
                          requires_grad=True)
    labels = torch.tensor([0, 2, 1])
    assert torch.autograd.gradcheck(lambda z: sce_loss(z, labels, 0.1, 1.0, CODE_LOG_ZERO), (logits,))
    assert torch.autograd.gradcheck(lambda z: sce_loss(z, labels, 6.0, 0.1, -4.0), (logits,))


def test_auto_takes_the_authors_alpha_and_beta_per_dataset():
    for dataset, expected in (("cifar10", (0.1, 1.0)), ("cifar100", (6.0, 0.1)), ("mnist", (0.01, 1.0)),
                              ("webvision", (10.0, 1.0)), ("digits", (0.1, 1.0))):
        options = {"alpha": "auto", "beta": "auto", "A": CODE_LOG_ZERO}
        noisybench_check_options(options=options, config={"dataset": dataset})
        assert (options["alpha"], options["beta"]) == expected
    for bad, key in (({"alpha": -1, "beta": "auto", "A": -4.0}, "sce.alpha"), ({"alpha": 1, "beta": "x", "A": -4.0},
                     "sce.beta"), ({"alpha": 1, "beta": 1, "A": 0.0}, "sce.A")):
        with pytest.raises(ConfigError, match=key):
            noisybench_check_options(options=bad, config={"dataset": "digits"})


def test_sce_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=6", "lr_schedule.step_every=4", method="sce")
    assert record["config"]["sce"] == {"alpha": 0.1, "beta": 1.0, "A": CODE_LOG_ZERO}
    assert record["test"]["accuracy"] >= 0.90
