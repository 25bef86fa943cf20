"""APL (Ma et al. 2020): NCE, RCE and MAE by hand against the authors' loss.py, their α/β, a run."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_digits
from noisybench_apl import apl_loss, mean_absolute_error, noisybench_check_options, normalized_cross_entropy

from noisybench.errors import ConfigError


def log_softmax(row):
    top = max(row)
    total = math.log(sum(math.exp(v - top) for v in row)) + top
    return [v - total for v in row]


def test_nce_mae_and_their_sums_by_hand():
    z, y = [[2.0, 0.5, -1.0], [0.3, -0.2, 0.9]], [0, 1]
    log_p = [log_softmax(row) for row in z]
    nce = [log_p[i][y[i]] / sum(log_p[i]) for i in range(2)]  # (-log p_y) / (-sum_k log p_k)
    mae = [1 - math.exp(log_p[i][y[i]]) for i in range(2)]
    rce = [-math.log(1e-4) * (1 - math.exp(log_p[i][y[i]])) for i in range(2)]  # no p below the 1e-7 floor here
    logits, labels = torch.tensor(z, dtype=torch.float64), torch.tensor(y)
    assert normalized_cross_entropy(logits, labels).tolist() == pytest.approx(nce, rel=1e-12)
    assert mean_absolute_error(logits, labels).tolist() == pytest.approx(mae, rel=1e-12)
    assert apl_loss(logits, labels, "rce", 10.0, 0.1).item() == pytest.approx(10 * sum(nce) / 2 + 0.1 * sum(rce) / 2)
    assert apl_loss(logits, labels, "mae", 1.0, 10.0).item() == pytest.approx(sum(nce) / 2 + 10 * sum(mae) / 2)


def test_edges_p_to_0_p_to_1_and_one_class():
    far = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    nce = normalized_cross_entropy(far, torch.tensor([1]))  # p_1 ~ e^-30: 30 / (~0 + 30 + 30)
    assert nce.item() == pytest.approx(0.5, rel=1e-9)
    nce.backward()
    assert torch.isfinite(far.grad).all()
    sure = torch.tensor([[40.0, -40.0, -40.0]], dtype=torch.float64)
    assert normalized_cross_entropy(sure, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-30)
    single = torch.tensor([[0.7]], dtype=torch.float64, requires_grad=True)  # the authors' 0/0 is 0 here
    loss = apl_loss(single, torch.tensor([0]), "rce", 1.0, 1.0) + apl_loss(single, torch.tensor([0]), "mae", 1.0, 1.0)
    loss.backward()
    assert loss.item() == 0.0 and single.grad.item() == 0.0


def test_apl_gradients_match_finite_differences():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.3, -0.2, 0.9], [5.0, -4.0, 1.0]], dtype=torch.float64,
                          requires_grad=True)
    labels = torch.tensor([0, 2, 1])
    for passive in ("rce", "mae"):
        assert torch.autograd.gradcheck(lambda z: apl_loss(z, labels, passive, 1.0, 1.0), (logits,))


def test_auto_takes_the_authors_alpha_and_beta():
    for passive, dataset, expected in (("rce", "cifar10", (1.0, 1.0)), ("rce", "cifar100", (10.0, 0.1)),
                                       ("rce", "mnist", (1.0, 10.0)), ("mae", "cifar100", (10.0, 1.0)),
                                       ("mae", "mnist", (1.0, 10.0)), ("mae", "digits", (1.0, 1.0)),
                                       ("rce", "webvision", (50.0, 0.1)), ("mae", "webvision", (50.0, 1.0))):
        options = {"passive": passive, "alpha": "auto", "beta": "auto"}
        noisybench_check_options(options=options, config={"dataset": dataset})
        assert (options["alpha"], options["beta"]) == expected
    with pytest.raises(ConfigError, match="apl.passive"):
        noisybench_check_options(options={"passive": "nce", "alpha": 1, "beta": 1}, config={"dataset": "digits"})


def test_apl_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=10", "lr_schedule.step_every=7", method="apl")
    assert record["config"]["apl"] == {"passive": "rce", "alpha": 1.0, "beta": 1.0}
    assert record["test"]["accuracy"] >= 0.90
