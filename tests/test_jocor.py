"""JoCoR (Wei et al. 2020) against algorithm/loss.py and algorithm/jocor.py of hongxin001/JoCoR."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from conftest import resumed_like_straight
from noisybench_jocor import joint_loss, noisybench_check_options

from noisybench.errors import ConfigError


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)


def test_joint_loss_by_hand():
    # sample 0: p1 = (s, 1 - s), p2 = (1 - s, s) with s = sigmoid(1); label 0. sample 1: both uniform.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    z2 = torch.tensor([[0.0, 1.0], [0.0, 0.0]], requires_grad=True)
    s = 1 / (1 + math.exp(-1))
    ce1, ce2 = -math.log(s), -math.log(1 - s)
    kl = (s - (1 - s)) * math.log(s / (1 - s))  # KL(p2 || p1) = KL(p1 || p2) here
    lam = 0.3
    joint = joint_loss(z1, z2, torch.tensor([0, 0]), lam)
    assert joint.tolist() == pytest.approx([(1 - lam) * (ce1 + ce2) + lam * 2 * kl, (1 - lam) * 2 * math.log(2)])
    joint[0].backward()  # the gradient reaches both networks' logits, through both sides of each KL
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_co_regularisation_weight_lambda_moves_the_loss_towards_agreement():
    z1 = torch.tensor([[2.0, 0.0]])
    z2 = torch.tensor([[0.0, 2.0]])
    labels = torch.tensor([0])
    supervised = joint_loss(z1, z2, labels, 0.0)
    only_agreement = joint_loss(z1, z2, labels, 1.0)
    assert joint_loss(z1, z2, labels, 0.25).item() == pytest.approx(0.75 * supervised.item() + 0.25 * only_agreement.item())
    assert joint_loss(z1, z1, labels, 1.0).item() == pytest.approx(0.0, abs=1e-7)  # agreeing networks: no KL


def test_auto_options_are_the_authors():
    def resolved(config):
        options = {"forget_rate": "auto", "num_gradual": 10, "exponent": 1.0, "co_lambda": "auto", "evaluate": "main"}
        noisybench_check_options(options=options, config=config)
        return options["forget_rate"], options["co_lambda"]

    assert resolved({"noise": "mapped:0.4", "dataset": "cifar10"}) == (0.2, 0.9)  # their "asymmetric": half
    assert resolved({"noise": "symmetric:0.8", "dataset": "cifar10"}) == (0.8, 0.65)
    assert resolved({"noise": "asymmetric:0.4", "dataset": "cifar100"}) == (0.4, 0.85)
    assert resolved({"noise": "symmetric:0.2", "dataset": "mnist"}) == (0.2, 0.95)
    with pytest.raises(ConfigError, match="jocor.co_lambda"):
        noisybench_check_options(options={"forget_rate": 0.2, "num_gradual": 10, "exponent": 1.0, "co_lambda": 1.5,
                                          "evaluate": "main"}, config={"noise": "none"})
    with pytest.raises(ConfigError, match="jocor.evaluate"):
        noisybench_check_options(options={"forget_rate": 0.2, "num_gradual": 10, "exponent": 1.0, "co_lambda": 0.5,
                                          "evaluate": "both"}, config={"noise": "none"})


def test_jocor_resumes_exactly_and_records_its_choices(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "jocor", "epochs=2", "noise=symmetric:0.4", "jocor.num_gradual=2",
                                        crash_at=2)
    assert straight["config"]["jocor"]["co_lambda"] == 0.9
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert samples["flagged"].mean() == pytest.approx(0.4, abs=0.02)  # epoch 2 of T_k = 2 leaves out 40%
    flagged = samples["flagged"].astype(bool)  # left out in epoch 2; weight: the share of both epochs kept
    assert samples["weight"].isin([0, 0.5, 1]).all() and samples["weight"].mean() == pytest.approx(0.6, abs=0.02)
    assert (samples["weight"][flagged] <= 0.5).all() and (samples["weight"][~flagged] >= 0.5).all()


def test_paper_config_resolves():
    from pathlib import Path

    from noisybench.api import make_config

    config = make_config("jocor", config_file=Path(__file__).parents[1] / "benchmarks" / "configs" / "cifar10n_jocor.yaml")
    assert (config["noise"], config["model"]["name"], config["batch_size"]) == ("human:aggre", "resnet34_cifar", 128)
    assert (config["jocor"]["co_lambda"], config["jocor"]["forget_rate"]) == (0.9, 0.0903)


def test_evaluation_is_the_main_network_or_both_networks_mean():
    from types import SimpleNamespace

    from noisybench_coteaching.family import two_network_logits

    main = torch.tensor([[2.0, 0.0, 0.0]])
    peer = torch.tensor([[0.0, 0.0, 2.0]])
    run = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m),
                          networks={"peer": SimpleNamespace(model=lambda images: (peer, None))})
    assert two_network_logits(run, None, main, "main") is None  # the core keeps the main network's logits
    mean = two_network_logits(run, None, main, "mean").exp()
    assert mean.tolist()[0] == pytest.approx(((main.softmax(1) + peer.softmax(1)) / 2).tolist()[0])
