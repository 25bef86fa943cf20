"""GLS (Wei et al. 2022): positive and negative smoothing by hand, the authors' warm-up and lr switch, a run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import run_digits
from noisybench_gls import (gls_loss, noisybench_check_options, noisybench_epoch_end, noisybench_epoch_start,
                            noisybench_loss)

from noisybench.errors import ConfigError


def log_softmax(row):
    top = max(row)
    total = math.log(sum(math.exp(v - top) for v in row)) + top
    return [v - total for v in row]


def authors_loss_gls(logits, labels, smooth_rate, wa=0.0, wb=1.0):
    """UCSC-REAL/negative-label-smoothing loss.py's loss_gls, per sample."""
    logprobs = logits.log_softmax(dim=-1)
    nll = -logprobs.gather(dim=-1, index=labels.unsqueeze(1)).squeeze(1)
    return (wa + wb * (1 - smooth_rate)) * nll + wb * smooth_rate * -logprobs.mean(dim=-1)


@pytest.mark.parametrize("rate", [0.4, -0.6, -4.0])
def test_positive_and_negative_smoothing_by_hand(rate):
    z, y = [[2.0, 0.5, -1.0], [0.3, -0.2, 0.9]], [0, 2]
    log_p = [log_softmax(row) for row in z]
    expected = [-(1 - rate) * log_p[i][y[i]] - rate * sum(log_p[i]) / 3 for i in range(2)]
    logits = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor(y)
    loss = gls_loss(logits, labels, rate)
    assert loss.tolist() == pytest.approx(expected, rel=1e-12)
    assert loss.tolist() == pytest.approx(authors_loss_gls(logits, labels, rate).tolist(), rel=1e-12)
    loss.sum().backward()  # the gradient is p - target, target = (1 - r) e_y + r / K (negative entries when r < 0)
    target = (1 - rate) * torch.nn.functional.one_hot(labels, 3).to(torch.float64) + rate / 3
    assert torch.allclose(logits.grad, logits.detach().softmax(1) - target, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda v: gls_loss(v, labels, rate).mean(), (logits,))


def test_edges_p_to_0_p_to_1_and_one_class():
    sure = torch.tensor([[60.0, -60.0, -60.0]], dtype=torch.float64, requires_grad=True)
    loss = gls_loss(sure, torch.tensor([0]), -0.6)  # p -> 1 for the label: NLS still pushes the others down
    loss.backward()
    assert torch.isfinite(loss) and sure.grad.tolist()[0] == pytest.approx([-1.6 + 1 + 0.2, 0.2, 0.2], abs=1e-12)
    far = torch.tensor([[60.0, -60.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = gls_loss(far, torch.tensor([1]), 0.4)  # p -> 0 for the label: log-softmax stays finite
    loss.backward()
    assert loss.item() == pytest.approx(0.6 * 120 + 0.4 * (0 + 120 + 60) / 3, rel=1e-9)
    assert torch.isfinite(far.grad).all()
    assert gls_loss(torch.tensor([[1.0]]), torch.tensor([0]), -0.6).item() == 0.0


def test_warmup_trains_cross_entropy_then_gls_at_the_authors_learning_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    logged = {}
    run = SimpleNamespace(options={"smooth_rate": -0.6, "warmup_epochs": 2, "lr_after_warmup": 1e-6},
                          optimizer=optimizer, scratch={}, log=logged.update)
    logits, labels = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([1])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert noisybench_loss(run=run, logits=logits, labels=labels, epoch=2).item() == pytest.approx(ce.item())
    assert noisybench_loss(run=run, logits=logits, labels=labels, epoch=3).item() == pytest.approx(
        gls_loss(logits, labels, -0.6).item())
    noisybench_epoch_start(run=run, epoch=2)
    assert optimizer.param_groups[0]["lr"] == 0.1 and not logged  # warm-up epochs keep the schedule's
    noisybench_epoch_start(run=run, epoch=3)
    assert optimizer.param_groups[0]["lr"] == 1e-6 and logged["lr_used"] == 1e-6
    noisybench_epoch_end(run=run)
    assert optimizer.param_groups[0]["lr"] == 0.1  # the scheduler (and the checkpoint) get theirs back


def test_warmup_auto_follows_the_authors_readme():
    for rate, noise, epochs, expected in ((0.1, "symmetric:0.2", 220, 0), (0.0, "none", 10, 0),
                                          (-0.2, "symmetric:0.2", 220, 120), (0.1, "symmetric:0.4", 220, 120),
                                          (-0.2, "asymmetric:0.4", 15, 8)):
        options = {"smooth_rate": rate, "warmup_epochs": "auto", "lr_after_warmup": None}
        noisybench_check_options(options=options, config={"noise": noise, "epochs": epochs})
        assert options["warmup_epochs"] == expected
    for key, value in (("warmup_epochs", -1), ("lr_after_warmup", 0), ("smooth_rate", 1.0), ("smooth_rate", "x")):
        options = {"smooth_rate": -0.2, "warmup_epochs": 3, "lr_after_warmup": None, key: value}
        with pytest.raises(ConfigError, match=f"gls.{key}"):
            noisybench_check_options(options=options, config={"noise": "none", "epochs": 5})


def test_gls_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=6", "lr_schedule.step_every=4", method="gls")
    assert record["config"]["gls"] == {"smooth_rate": -0.2, "warmup_epochs": 3, "lr_after_warmup": None}
    assert record["test"]["accuracy"] >= 0.90
