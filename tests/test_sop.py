"""SOP (Liu et al. 2022): the loss and the two per-sample parameter updates on a case computed
by hand from the authors' model/loss.py, gradients against finite differences, and runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight
from noisybench_sop import EPSILON, noisybench_check_options, sop_loss, sop_step

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def by_hand(z, y, u, v):
    """One sample's (cross-entropy, squared error, ∂L/∂u, ∂L/∂v) before the 1/B of the batch
    mean, with U = min(u², 1) at the label, V_k = min(v_k², 1) off it, V without gradient in
    the cross-entropy; the clamps' gradient is 0 where they act."""
    k = len(z)
    p = softmax(z)
    big_u = min(u * u, 1.0)
    big_v = [0.0 if j == y else min(v[j] ** 2, 1.0) for j in range(k)]
    s = [max(p[j] + (big_u if j == y else 0.0) - big_v[j], EPSILON) for j in range(k)]
    total = sum(s)
    hard = max(range(k), key=lambda j: z[j])
    residual = [(1.0 if j == hard else 0.0) + (big_u if j == y else 0.0) - big_v[j] - (1.0 if j == y else 0.0)
                for j in range(k)]
    d_big_u = (-1 / s[y] + 1 / total) + 2 * residual[y]  # s[y] is above the clamp in these cases
    grad_u = d_big_u * 2 * u if u * u <= 1 else 0.0
    grad_v = [0.0 if j == y or v[j] ** 2 > 1 else -2 * residual[j] * 2 * v[j] for j in range(k)]
    return -math.log(s[y] / total), sum(r * r for r in residual), grad_u, grad_v


def test_loss_and_both_parameter_updates_by_hand():
    # sample 0: label = arg-max, v_2² = 1.44 is clamped to 1 (no gradient) and pushes s_2 to ε;
    # sample 1: a noisy label (arg-max 0, label 2), a negative u
    z, y = [[1.0, 0.0, -1.0], [2.0, 0.5, 0.0]], [0, 2]
    u, v = [0.5, -0.3], [[0.7, 0.4, 1.2], [0.5, 0.2, 0.9]]
    lr_u, lr_v = 1.0, 10.0
    parts = [by_hand(z[n], y[n], u[n], v[n]) for n in range(2)]
    loss = sum(ce for ce, _, _, _ in parts) / 2 + sum(se for _, se, _, _ in parts) / 2
    got, new_u, new_v = sop_step(torch.tensor(z, dtype=torch.float64), torch.tensor(y), torch.tensor(u, dtype=torch.float64),
                                 torch.tensor(v, dtype=torch.float64), lr_u, lr_v)
    assert got.item() == pytest.approx(loss, rel=1e-12)
    assert new_u.tolist() == pytest.approx([u[n] - lr_u * parts[n][2] / 2 for n in range(2)], rel=1e-12)
    assert new_v.tolist()[0] == pytest.approx([v[0][j] - lr_v * parts[0][3][j] / 2 for j in range(3)], rel=1e-12)
    assert new_v.tolist()[1] == pytest.approx([v[1][j] - lr_v * parts[1][3][j] / 2 for j in range(3)], rel=1e-12)
    assert new_v[0, 0] == v[0][0] and new_v[0, 2] == v[0][2] and new_v[1, 2] == v[1][2]  # label entry, clamped entry
    assert new_u[1].abs() > 0.3  # the noisy label's u grows: SOP explains the label as noise


def test_the_loss_gradient_matches_finite_differences_incl_clamps_and_one_class():
    u, v = torch.tensor([0.4], dtype=torch.float64), torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)
    for z, y in (([0.3, -0.2, 1.1], 0), ([-20.0, 5.0, 4.0], 0), ([30.0, 0.0, 0.0], 0), ([30.0, 0.0, 0.0], 1)):
        logits = torch.tensor([z], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: sop_loss(x, torch.tensor([y]), u, v), (logits,))
        assert torch.autograd.gradcheck(lambda x: sop_step(x, torch.tensor([y]), u, v, 1.0, 10.0)[0], (logits,))
    one = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)  # one class: p = 1, V = 0
    loss, new_u, _ = sop_step(one, torch.tensor([0]), torch.tensor([0.5], dtype=torch.float64),
                              torch.zeros(1, 1, dtype=torch.float64), 1.0, 10.0)
    assert loss.item() == pytest.approx(0.25 ** 2, rel=1e-12)  # CE 0, squared error (h + U − y)² = U²
    assert new_u.item() == pytest.approx(0.5 - 2 * 0.25 * 2 * 0.5, rel=1e-12)  # u shrinks towards 0


def test_closed_form_steps_equal_autograd_through_the_authors_loss():
    """The training path's loss and logits gradient equal those of model/loss.py's computation,
    and u's and v's closed-form gradients autograd's through it, also where a clamp acts:
    u² > 1, v² > 1, p(label) + U below ε."""
    z = torch.tensor([[0.3, -0.2, 1.1, 0.0], [20.0, 0.0, 0.0, -3.0], [1.0, 2.0, 0.5, 0.5], [0.0, 0.1, 0.2, 0.3]],
                     dtype=torch.float64)
    y = torch.tensor([2, 1, 0, 3])
    u = torch.tensor([0.4, 1e-3, 1.3, 0.999], dtype=torch.float64)
    v = torch.tensor([[0.3, 1.1, 0.2, 0.5], [0.2, 0.9, 0.7, 0.1], [0.6, 0.8, 1.5, 0.3], [0.0, 1.0, 0.4, 0.9]],
                     dtype=torch.float64)
    leaf_z, leaf_u, leaf_v = z.clone().requires_grad_(True), u.clone().requires_grad_(True), v.clone().requires_grad_(True)
    reference = sop_loss(leaf_z, y, leaf_u, leaf_v)
    grad_z, grad_u, grad_v = torch.autograd.grad(reference, [leaf_z, leaf_u, leaf_v])
    trained_z = z.clone().requires_grad_(True)
    loss, new_u, new_v = sop_step(trained_z, y, u, v, lr_u=1.0, lr_v=1.0)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)  # the training path computes the same loss
    assert torch.allclose(torch.autograd.grad(loss, trained_z)[0], grad_z, rtol=1e-10, atol=1e-15)
    assert torch.allclose(u - new_u, grad_u, rtol=1e-12, atol=1e-15)
    assert torch.allclose(v - new_v, grad_v, rtol=1e-12, atol=1e-15)
    assert grad_u[2] == 0 and grad_u[1] != 0 and grad_v[2, 2] == 0  # u² > 1 and v² > 1 clamp, p + U < ε does not stop the squared error


def test_auto_takes_the_authors_rates():
    for dataset, noise, expected in (("cifar100", "symmetric:0.5", (1.0, 10.0)), ("cifar100", "asymmetric:0.4", (0.1, 100.0)),
                                     ("cifar100", "mapped:0.4", (0.1, 100.0)), ("cifar10", "symmetric:0.4", (10.0, 10.0)),
                                     ("digits", "symmetric:0.4", (1.0, 10.0))):
        options = {"lr_u": "auto", "lr_v": "auto", "init_std": 1e-8}
        noisybench_check_options(options=options, config={"dataset": dataset, "noise": noise})
        assert (options["lr_u"], options["lr_v"]) == expected
    with pytest.raises(ConfigError, match="sop.lr_v"):
        noisybench_check_options(options={"lr_u": 1, "lr_v": "x", "init_std": 1e-8}, config={"dataset": "digits"})


def test_sop_learns_finds_the_flipped_labels_and_resumes_exactly(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "sop", "noise=symmetric:0.4", crash_at=9)  # digits' 15 epochs
    assert straight["test"]["accuracy"] >= 0.9 and straight["config"]["sop"]["lr_u"] == 1.0
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert samples["noise_score"].between(0, 1).all()


def test_under_several_processes_the_rows_of_every_process_are_kept():
    """With several processes each steps u and v of its own batch and ``run.collect`` (the
    core's gather, tested under two real processes in test_elr.py) brings every process's
    rows: here a stand-in collect adds the other process's two rows, which must land in the
    state as gathered, beside this process's own step."""
    from types import SimpleNamespace

    from noisybench_sop import noisybench_loss

    other = torch.tensor([0, 3]), torch.tensor([[0.5, 0.1, 0.2, 0.3], [0.6, 0.4, 0.5, 0.6]])

    def collect(indices, values):
        return torch.cat([indices, other[0]]), torch.cat([values, other[1]])

    state = {"u": torch.full((5,), 0.1), "v": torch.full((5, 3), 0.1)}
    run = SimpleNamespace(options={"lr_u": 1.0, "lr_v": 10.0}, state=state, collect=collect,
                          accelerator=SimpleNamespace(num_processes=2))
    logits, labels, mine = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([2, 1]), torch.tensor([1, 4])
    _, stepped_u, stepped_v = sop_step(logits, labels, state["u"][mine], state["v"][mine], 1.0, 10.0)
    noisybench_loss(run=run, logits=logits, labels=labels, indices=mine)
    assert state["u"].tolist() == pytest.approx([0.5, stepped_u[0].item(), 0.1, 0.6, stepped_u[1].item()])
    assert state["v"][3].tolist() == pytest.approx([0.4, 0.5, 0.6]) and torch.equal(state["v"][1], stepped_v[0])
