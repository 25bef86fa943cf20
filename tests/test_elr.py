"""ELR (Liu et al. 2020): the target update and loss on cases computed by hand, and runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess, resumed_like_straight, run_digits
from noisybench_elr import elr_loss, noisybench_check_options, updated_targets

from noisybench.errors import ConfigError


def softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_target_update_and_loss_by_hand():
    z = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]
    y = [0, 2]
    t_old = [[0.2, 0.5, 0.3], [0.0, 0.0, 0.0]]
    beta, lam = 0.7, 3.0
    p = [softmax(row) for row in z]  # no clamp acts: every p is above 1e-4
    t_new = [[beta * t + (1 - beta) * q for t, q in zip(ts, ps)] for ts, ps in zip(t_old, p)]
    ce = sum(-math.log(p[i][y[i]]) for i in range(2)) / 2
    reg = sum(math.log(1 - sum(t * q for t, q in zip(t_new[i], p[i]))) for i in range(2)) / 2
    logits = torch.tensor(z, dtype=torch.float64)
    targets = updated_targets(logits, torch.tensor(t_old), beta)
    assert torch.allclose(targets, torch.tensor(t_new), rtol=1e-6) and not targets.requires_grad
    loss = elr_loss(logits, torch.tensor(y), targets, lam)
    assert loss.item() == pytest.approx(ce + lam * reg, abs=1e-6)  # computed in float32, as in training


def test_the_clamp_and_renormalisation_of_confident_predictions():
    logits = torch.tensor([[30.0, 0.0, 0.0]])  # softmax ~ (1, 1e-13, 1e-13): clamped to (1 - 1e-4, 1e-4, 1e-4)
    targets = updated_targets(logits, torch.zeros(1, 3), beta=0.0)
    total = (1 - 1e-4) + 2e-4
    assert targets[0].tolist() == pytest.approx([(1 - 1e-4) / total, 1e-4 / total, 1e-4 / total], rel=1e-5)
    # the regulariser uses the clamped p (with gradient): log(1 - <t, p>) stays finite
    logits.requires_grad_(True)
    loss = elr_loss(logits, torch.tensor([0]), targets, lam=3.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_auto_takes_the_authors_values_per_dataset_and_noise():
    for dataset, noise, expected in (("cifar100", "symmetric:0.4", (0.9, 7.0)), ("cifar100", "asymmetric:0.4", (0.9, 7.0)),
                                     ("cifar10", "symmetric:0.4", (0.7, 3.0)), ("cifar10", "asymmetric:0.4", (0.7, 3.0)),
                                     ("cifar10", "mapped:0.4", (0.9, 1.0)),
                                     ("clothing1m", "none", (0.7, 3.0)), ("digits", None, (0.7, 3.0))):
        options = {"beta": "auto", "lambda": "auto"}
        noisybench_check_options(options=options, config={"dataset": dataset, "noise": noise})
        assert (options["beta"], options["lambda"]) == expected
    kept = {"beta": 0.5, "lambda": 1}
    noisybench_check_options(options=kept, config={"dataset": "cifar100"})
    assert kept == {"beta": 0.5, "lambda": 1.0}
    for bad, message in (({"beta": 1.0, "lambda": 3}, "elr.beta"), ({"beta": 0.7, "lambda": "x"}, "elr.lambda")):
        with pytest.raises(ConfigError, match=message):
            noisybench_check_options(options=bad, config={"dataset": "digits"})


def test_elr_on_digits_finds_the_flipped_labels(tmp_path):
    # seed 3: a run whose last (8th) epoch is not one of the dips of digits' lr 0.05 before its step at 10
    record = run_digits(tmp_path, "epochs=8", "noise=symmetric:0.4", "seed=3", method="elr")
    assert record["config"]["elr"] == {"beta": 0.7, "lambda": 3.0}
    assert record["detection"]["auc"] > 0.95 and record["test"]["accuracy"] > 0.9
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert ((samples["noise_score"] - (1 - samples["weight"])).abs() < 1e-6).all()
    assert abs(samples["flagged"].mean() - samples["is_noisy"].mean()) < 0.1


def test_elr_resumes_exactly(tmp_path):
    resumed_like_straight(tmp_path, "elr", "epochs=4", "noise=symmetric:0.4", crash_at=3)


def test_two_processes_keep_every_samples_target(tmp_path):
    proc = noisybench_subprocess("run", "--method", "elr", "--dataset", "digits", "--output", str(tmp_path),
                                 "epochs=2", "noise=symmetric:0.4", "progress=false", processes=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert (samples["weight"] > 0).all()  # the main process holds the targets of the other's samples too
