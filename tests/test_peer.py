"""Peer loss (Liu & Guo 2020): the stable CE and peer term by hand, the authors' α schedules and lr/(1 + α), runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import resumed_like_straight, run_digits
from noisybench_peer import (alpha_at, authors_schedule, cyclic_derangement, noisybench_check_options,
                             noisybench_epoch_end, noisybench_epoch_start, peer_loss, stable_cross_entropy)

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v - max(row)) for v in row]
    return [e / sum(exps) for e in exps]


def test_stable_cross_entropy_and_the_peer_term_by_hand():
    z = [[2.0, 0.5, -1.0], [0.3, -0.2, 0.9], [5.0, -4.0, 1.0]]
    y, peer_rows, peer_y, alpha = [0, 2, 1], [2, 0, 1], [1, 1, 0], 0.7
    p = [softmax(row) for row in z]
    main = sum(-math.log(p[i][y[i]] + 1e-5) for i in range(3)) / 3
    peer = sum(-math.log(p[peer_rows[j]][peer_y[j]] + 1e-5) for j in range(3)) / 3
    logits = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = peer_loss(logits, torch.tensor(y), logits[peer_rows], torch.tensor(peer_y), alpha)
    assert loss.item() == pytest.approx(main - alpha * peer, rel=1e-12)
    assert torch.autograd.gradcheck(
        lambda v: peer_loss(v, torch.tensor(y), v[peer_rows], torch.tensor(peer_y), alpha), (logits,))
    # p -> 0: the 1e-5 bounds the loss at -log 1e-5 and its gradient; p -> 1 and one class: ~ -1e-5
    far = torch.tensor([[60.0, -60.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = stable_cross_entropy(far, torch.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(-math.log(1e-5), rel=1e-6) and far.grad.abs().max().item() < 1e-40
    sure = torch.tensor([[60.0, 0.0, 0.0]], dtype=torch.float64)
    assert stable_cross_entropy(sure, torch.tensor([0])).item() == pytest.approx(-math.log(1 + 1e-5), rel=1e-9)
    assert stable_cross_entropy(torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0])).item() == pytest.approx(
        -math.log(1 + 1e-5))


def test_batch_peers_pair_each_image_with_another_samples_label():
    generator = torch.Generator().manual_seed(0)
    seen = np.zeros((4, 4), dtype=int)
    for _ in range(600):
        partner = cyclic_derangement(4, generator)
        assert sorted(partner.tolist()) == [0, 1, 2, 3] and (partner != torch.arange(4)).all()
        seen[np.arange(4), partner.numpy()] += 1
    assert (seen[~np.eye(4, dtype=bool)] > 100).all()  # every other sample is a partner, about equally often


def authors_f_alpha(segments, epochs):
    """runner.py's f_alpha: np.concatenate of the linspace pieces, read at 0-based epochs."""
    alpha = np.concatenate([np.linspace(start, end, num=count) for count, start, end in segments])
    return [alpha[epoch] for epoch in range(epochs)]


def test_auto_alpha_is_the_authors_schedule_and_scales_with_the_run():
    cases = (("cifar10", "symmetric:0.4", 300, [[20, 0, 0], [20, 0, 0.1], [50, 1, 2], [50, 2, 2.5], [100, 2.5, 3.3],
                                                  [100, 3.3, 5]]),
             ("cifar10", "asymmetric:0.2", 300, [[20, 0, 0], [20, 0, 1], [50, 1, 2], [50, 2, 5], [100, 5, 10],
                                                  [100, 10, 20]]),
             ("cifar100", "symmetric:0.4", 250, [[100, 0, 0], [150, 0.95, 0.95]]),
             ("cifar100", "mapped:0.2", 250, [[110, 0, 0], [20, 0, 2], [70, 2, 10], [50, 10, 20]]),
             ("digits", "symmetric:0.4", 300, [[120, 0, 0], [180, 0, 1]]))  # MNIST's and Fashion-MNIST's
    for dataset, noise, epochs, theirs in cases:
        ours = authors_schedule(dataset, noise, epochs)
        assert [alpha_at(ours, e) for e in range(1, epochs + 1)] == pytest.approx(authors_f_alpha(theirs, epochs))
    assert authors_schedule("digits", "symmetric:0.4", 15) == [[6, 0.0, 0.0], [9, 0.0, 1.0]]  # 120/300 of 15: 6
    assert alpha_at(2.5, 7) == 2.5 and alpha_at([[2, 0, 0], [2, 1, 3]], 9) == 3.0  # the last value holds
    options = {"alpha": "auto", "draw": "batch", "scale_lr": True}
    noisybench_check_options(options=options, config={"dataset": "cifar100", "noise": "symmetric:0.4", "epochs": 250})
    assert options["alpha"] == [[100, 0.0, 0.0], [150, 0.95, 0.95]]
    for bad in ({"alpha": -1}, {"alpha": [[0, 1, 2]]}, {"alpha": [[2.5, 1, 2]]}, {"draw": "pairs"}):
        with pytest.raises(ConfigError, match="peer."):
            noisybench_check_options(options=dict(options, **bad), config={"dataset": "digits", "epochs": 5})


def test_each_epoch_divides_the_learning_rate_by_one_plus_alpha():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    logged = {}
    run = SimpleNamespace(options={"alpha": [[1, 0, 0], [2, 1, 3]], "scale_lr": True}, optimizer=optimizer,
                          scratch={}, log=logged.update, config={"seed": 0},
                          accelerator=SimpleNamespace(process_index=0))
    for epoch, alpha in ((1, 0.0), (2, 1.0), (3, 3.0)):
        noisybench_epoch_start(run=run, epoch=epoch)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / (1 + alpha)) and logged["alpha"] == alpha
        noisybench_epoch_end(run=run)
        assert optimizer.param_groups[0]["lr"] == 0.1  # the scheduler (and the checkpoint) get theirs back


def test_peer_learns_digits_under_40_percent_symmetric_noise(tmp_path):
    record = run_digits(tmp_path, "noise=symmetric:0.4", "epochs=6", "lr_schedule.step_every=4", method="peer")
    assert record["config"]["peer"] == {"alpha": [[2, 0.0, 0.0], [4, 0.0, 1.0]], "draw": "batch", "scale_lr": True}
    assert [h["alpha"] for h in record["history"]] == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1])
    assert record["test"]["accuracy"] >= 0.90


def test_peer_with_dataset_draws_resumes_exactly(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "peer", "epochs=3", "noise=symmetric:0.4", "peer.draw=dataset",
                                        crash_at=3)  # resumed in the first epoch with a peer term
    assert [h["alpha"] for h in straight["history"]] == [0, 0, 1]
