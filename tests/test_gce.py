"""GCE (Zhang & Sabuncu 2018): L_q by hand, truncation and its pruning schedule, runs, resume, two processes."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight, run_digits
from noisybench_gce import (lq_loss, noisybench_check_options, noisybench_epoch_start, noisybench_loss, noisybench_setup,
                             paper_schedule, truncated_loss)

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v - max(row)) for v in row]
    return [e / sum(exps) for e in exps]


def test_lq_and_its_gradient_by_hand():
    z, y, q = [2.0, 0.5, -1.0], 0, 0.7
    p = softmax(z)
    logits = torch.tensor([z], dtype=torch.float64, requires_grad=True)
    loss = lq_loss(logits, torch.tensor([y]), q)
    assert loss.item() == pytest.approx((1 - p[y] ** q) / q, rel=1e-12)
    loss.sum().backward()
    # dL/dz_j = -p_y^q (1[j = y] - p_j)
    assert logits.grad[0].tolist() == pytest.approx([-p[y] ** q * ((j == y) - p[j]) for j in range(3)], rel=1e-10)
    labels = torch.tensor([0, 2, 1])
    grid = torch.tensor([[2.0, 0.5, -1.0], [0.3, -0.2, 0.9], [5.0, -4.0, 1.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: lq_loss(v, labels, q).mean(), (grid,))


def test_lq_spans_ce_and_mae_and_its_edges():
    logits, labels = torch.tensor([[2.0, 0.5, -1.0]], dtype=torch.float64), torch.tensor([1])
    p = softmax([2.0, 0.5, -1.0])[1]
    assert lq_loss(logits, labels, 1e-6).item() == pytest.approx(-math.log(p), rel=1e-5)  # q -> 0: CE
    assert lq_loss(logits, labels, 1.0).item() == pytest.approx(1 - p, rel=1e-12)  # q = 1: MAE
    # p_y -> 0 (e^-200 underflows float32 to 0): 1/q with a finite gradient, where (1 - p^q)/q gives NaN
    far = torch.tensor([[0.0, 200.0, 0.0]], requires_grad=True)
    loss = lq_loss(far, torch.tensor([0]), 0.7)
    loss.backward()
    assert loss.item() == pytest.approx(1 / 0.7) and torch.isfinite(far.grad).all()
    naive = torch.tensor([[0.0, 200.0, 0.0]], requires_grad=True)
    ((1 - naive.softmax(1)[0, 0] ** 0.7) / 0.7).backward()
    assert torch.isnan(naive.grad).any()
    sure = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)  # p_y -> 1
    loss = lq_loss(sure, torch.tensor([0]), 0.7)
    loss.backward()
    assert loss.item() == 0.0 and sure.grad.abs().max().item() == 0.0
    assert lq_loss(torch.tensor([[3.0]]), torch.tensor([0]), 0.7).item() == 0.0  # one class


def test_truncated_loss_and_the_pruning_rule():
    z, y, q, k = [[2.0, 0.5, -1.0], [0.3, -0.2, 0.9]], [0, 0], 0.7, 0.5
    logits = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    losses = lq_loss(logits, torch.tensor(y), q)
    loss = truncated_loss(losses, torch.tensor([1.0, 0.0], dtype=torch.float64), k, q)
    lq_k = (1 - k ** q) / q
    assert loss.item() == pytest.approx(((1 - softmax(z[0])[0] ** q) / q - lq_k) / 2, rel=1e-12)
    loss.backward()
    assert logits.grad[1].abs().max().item() == 0.0 and logits.grad[0].abs().max().item() > 0  # pruned: no gradient
    # the pruning step keeps p_y > k only (L_q < L_q(k)), from the source chosen
    logged = {}
    run = SimpleNamespace(options={"truncated": True, "k": k, "prune_start": 3, "prune_every": 2,
                                   "prune_source": "train_pass"},
                          state={"p_label": torch.tensor([0.6, 0.5, 0.4, 0.9]), "weight": torch.ones(4)},
                          phase=lambda name: contextlib.nullcontext(), log=logged.update)
    for epoch in (1, 2, 4):  # before the start, and between prunings: nothing happens
        noisybench_epoch_start(run=run, epoch=epoch)
        assert run.state["weight"].tolist() == [1, 1, 1, 1]
    noisybench_epoch_start(run=run, epoch=3)
    assert run.state["weight"].tolist() == [1, 0, 0, 1] and logged["pruned"] == 0.5
    run.options["prune_source"] = "eval_pass"  # the current model's p_y over the training set instead
    run.predict = lambda: (torch.tensor([[0.0, 1.0], [3.0, 0.0], [0.0, 0.0], [0.0, 9.0]]), None)
    run.noisy_labels = torch.tensor([0, 0, 1, 1])
    noisybench_epoch_start(run=run, epoch=5)
    assert run.state["weight"].tolist() == [0, 1, 0, 1]  # p_y: 0.27, 0.95, 0.5 (not above k), 0.9999


def test_auto_pruning_schedule_is_the_papers():
    def config(dataset, epochs, milestones=None, step_every=None, name="step"):
        return {"dataset": dataset, "epochs": epochs,
                "lr_schedule": {"name": name, "milestones": milestones, "step_every": step_every}}
    assert paper_schedule(config("cifar10", 120, [40, 80])) == (40, 10)  # the paper's CIFAR-10
    assert paper_schedule(config("cifar100", 150, [80, 120])) == (80, 10)  # and CIFAR-100
    assert paper_schedule(config("digits", 15, step_every=10)) == (10, 1)  # the first decay; 10/120 of 15
    assert paper_schedule(config("digits", 30, name="cosine")) == (10, 2)  # no decay: a third of the epochs
    options = {"q": 0.7, "truncated": True, "k": 0.5, "prune_start": "auto", "prune_every": "auto",
               "prune_source": "train_pass"}
    noisybench_check_options(options=options, config=config("cifar10", 120, [40, 80]))
    assert (options["prune_start"], options["prune_every"]) == (40, 10)
    for key, value in (("q", 0.0), ("k", 1.0), ("prune_start", 1), ("prune_every", 0), ("prune_source", "x")):
        with pytest.raises(ConfigError, match=f"gce.{key}"):
            noisybench_check_options(options=dict(options, **{key: value}), config=config("cifar10", 120, [40, 80]))


def test_gce_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=8", "lr_schedule.step_every=6", method="gce")
    assert record["config"]["gce"]["q"] == 0.7 and record["config"]["gce"]["truncated"] is False
    assert record["test"]["accuracy"] >= 0.90


def test_truncated_gce_resumes_exactly_and_prunes_on_schedule(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "gce", "epochs=3", "noise=symmetric:0.4", "gce.truncated=true",
                                        "lr_schedule.step_every=2", crash_at=3)
    assert (straight["config"]["gce"]["prune_start"], straight["config"]["gce"]["prune_every"]) == (2, 1)
    assert [h.get("pruned") is not None for h in straight["history"]] == [False, True, True]
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert ((samples["weight"] == 0) == samples["flagged"]).all()
    assert straight["history"][-1]["pruned"] == pytest.approx(samples["flagged"].mean())


def test_under_several_processes_every_samples_probability_is_kept():
    """With several processes each records p_y of its own batch and ``run.collect`` (the core's
    gather, run under two real processes in test_elr.py and test_distributed.py) brings every
    process's rows: here a stand-in collect adds the other process's two rows, which must land
    in the state beside this process's own, and the next pruning reads them all."""
    other = torch.tensor([0, 3]), torch.tensor([0.9, 0.2])

    def collect(indices, values):
        return torch.cat([indices, other[0]]), torch.cat([values, other[1]])

    options = {"truncated": True, "q": 0.7, "k": 0.5, "prune_start": 2, "prune_every": 1, "prune_source": "train_pass"}
    run = SimpleNamespace(options=options, state={}, num_train=5, collect=collect, log=lambda **kw: logged.update(kw),
                          accelerator=SimpleNamespace(num_processes=2), phase=lambda name: contextlib.nullcontext())
    logged = {}
    noisybench_setup(run=run)
    logits, labels, mine = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]), torch.tensor([1, 4])
    noisybench_loss(run=run, logits=logits, labels=labels, indices=mine)
    own = logits.softmax(dim=1)[:, 0]
    assert run.state["p_label"].tolist() == pytest.approx([0.9, own[0].item(), 0.0, 0.2, own[1].item()])
    noisybench_epoch_start(run=run, epoch=2)
    assert run.state["weight"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]  # p_y > k = 0.5: samples 0 and 1
    assert logged["pruned"] == pytest.approx(0.6)
