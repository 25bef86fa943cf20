"""Meta-Weight-Net: the weighting network and its meta-gradient by hand, against the authors'
algorithm written out with torch.func, against higher and finite differences; then runs."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import resumed_like_straight, run_digits
from test_lsw import ConvNet, TinyNet, separable_toy, toy_batch
from torch.func import functional_call

from noisybench.errors import ConfigError
from noisybench_lsw.meta import full_meta_step, jvp_meta_step
from noisybench_mwnet import noisybench_check_options
from noisybench_mwnet.weightnet import WeightNet, meta_weight_step


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)


def hand_net(dtype=torch.float64) -> WeightNet:
    """V with hidden units relu(L), relu(1 − L), relu(0.5 L − 0.2): z = 2 h1 − 3 h2 + h3 + 0.5."""
    net = WeightNet(hidden=3).to(dtype)
    with torch.no_grad():
        net.linear1.weight.copy_(torch.tensor([[1.0], [-1.0], [0.5]]))
        net.linear1.bias.copy_(torch.tensor([0.0, 1.0, -0.2]))
        net.linear2.weight.copy_(torch.tensor([[2.0, -3.0, 1.0]]))
        net.linear2.bias.copy_(torch.tensor([0.5]))
    return net


def test_weight_net_by_hand():
    got = hand_net()(torch.tensor([0.5, 2.0, 0.0], dtype=torch.float64))
    # L = 0.5: h = (0.5, 0.5, 0.05), z = 1 − 1.5 + 0.05 + 0.5;  L = 2: h = (2, 0, 0.8), z = 5.3;  L = 0: h = (0, 1, 0), z = −2.5
    assert torch.allclose(got, torch.sigmoid(torch.tensor([0.05, 5.3, -2.5], dtype=torch.float64)))


def meta_loss(model, net, x, y, xc, yc, lr, normalise):
    """L_meta(Theta'(phi)) as the authors' MW-Net.py computes it: a virtual step kept in the graph."""
    params = dict(model.named_parameters())
    logits, _ = functional_call(model, params, (x,))
    cost = F.cross_entropy(logits, y, reduction="none")
    w = net(cost.detach())
    loss = (cost * w).sum() / (len(cost) if normalise == "mean" else w.sum())
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    fast = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return F.cross_entropy(functional_call(model, fast, (xc,))[0], yc)  # a mean over the meta batch


def one_step(meta, normalise, seed=2, lr=0.4):
    torch.manual_seed(0)
    model, net = TinyNet().double(), hand_net()
    x, y, _, xc, yc = toy_batch(seed=seed)
    reference_net = copy.deepcopy(net)
    step = meta_weight_step(model, x, y, xc, yc, lr, net, torch.optim.SGD(net.parameters(), lr=0.1), meta, normalise)
    return model, reference_net, net, (x, y, xc, yc), step


@pytest.mark.parametrize("normalise", ["mean", "sum"])
@pytest.mark.parametrize("meta", [jvp_meta_step, full_meta_step])
def test_one_step_is_the_authors_algorithm(meta, normalise):
    model, before, net, (x, y, xc, yc), step = one_step(meta, normalise)
    expected = torch.autograd.grad(meta_loss(model, before, x, y, xc, yc, 0.4, normalise), list(before.parameters()))
    for got, want in zip(net.parameters(), expected):
        assert want.abs().max() > 1e-6 and torch.allclose(got.grad, want, rtol=1e-9, atol=1e-12)
    for got, was, grad in zip(net.parameters(), before.parameters(), expected):  # phi' = phi − 0.1 grad
        assert torch.allclose(got, was - 0.1 * grad, rtol=1e-12)
    cost = F.cross_entropy(model(x)[0], y, reduction="none")  # Theta's step: the weights of the new V
    new = net(cost.detach())
    assert torch.allclose(step.weights, new, rtol=1e-12)
    loss = (cost * new).sum() / (len(cost) if normalise == "mean" else new.sum())
    for got, want in zip(step.grads, torch.autograd.grad(loss, list(model.parameters()))):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("normalise", ["mean", "sum"])
def test_phi_gradient_matches_finite_differences(normalise):
    model, before, net, (x, y, xc, yc), _ = one_step(jvp_meta_step, normalise, seed=6)
    eps = 1e-6
    for got, param in zip(net.parameters(), before.parameters()):
        for i in range(param.numel()):
            flat = param.data.view(-1)
            flat[i] += eps
            up = meta_loss(model, before, x, y, xc, yc, 0.4, normalise).item()
            flat[i] -= 2 * eps
            down = meta_loss(model, before, x, y, xc, yc, 0.4, normalise).item()
            flat[i] += eps
            assert got.grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-10)


@pytest.mark.parametrize("normalise", ["mean", "sum"])
def test_jvp_and_higher_agree_with_batchnorm_and_dropout(normalise):
    torch.manual_seed(4)
    model = ConvNet().double()
    g = torch.Generator().manual_seed(9)
    x, xc = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    y, yc = torch.randint(0, 3, (8,), generator=g), torch.randint(0, 3, (5,), generator=g)
    steps, nets = [], []
    for meta in (full_meta_step, jvp_meta_step):
        torch.manual_seed(11)
        net = hand_net()
        steps.append(meta_weight_step(copy.deepcopy(model), x, y, xc, yc, 0.3, net,
                                      torch.optim.Adam(net.parameters(), lr=1e-3), meta, normalise))
        nets.append(net)
    (reference, fast), (ref_net, fast_net) = steps, nets
    assert reference.weight_grad.abs().max() > 1e-4
    assert torch.allclose(fast.weight_grad, reference.weight_grad, rtol=1e-9, atol=1e-13)
    for a, b in zip(fast_net.parameters(), ref_net.parameters()):
        assert torch.allclose(a, b, rtol=1e-12)
    for a, b in zip(fast.grads, reference.grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    assert all(torch.equal(fast.buffers[k], reference.buffers[k]) for k in reference.buffers)


def test_flipped_samples_are_weighted_down_on_a_separable_toy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, true, noisy, clean_x, clean_y = separable_toy(g)
    model, net = TinyNet(), WeightNet()
    optimizer, net_optimizer = torch.optim.SGD(model.parameters(), lr=0.2), torch.optim.Adam(net.parameters(), lr=1e-3)
    weights = torch.ones(300)
    for _ in range(10):
        for batch in torch.randperm(300, generator=g).split(30):
            step = meta_weight_step(model, x[batch], noisy[batch], clean_x, clean_y, 0.2, net, net_optimizer,
                                    jvp_meta_step, "mean")
            weights[batch] = step.weights
            for p, grad in zip(model.parameters(), step.grads):
                p.grad = grad
            optimizer.step()
    is_flipped = noisy != true
    assert weights[is_flipped].mean() < 0.5 * weights[~is_flipped].mean()
    curve = net(torch.tensor([0.0, 1.0, 4.0]))
    assert curve[0] > curve[1] > curve[2]  # V learned to trust small losses


def test_authors_scripts_resolve_auto():
    options = {"script": "stable", "normalise": "auto", "weight_optimizer": "auto", "weight_lr": 1e-3,
               "weight_decay": "auto", "hidden": 100, "clean_batch_size": "auto", "meta_gradient": "jvp",
               "flag_ratio": 0.5}
    config = {"batch_size": 100, "optimizer": {"name": "sgd"}}
    stable = dict(options)
    noisybench_check_options(options=stable, config=config)
    assert (stable["normalise"], stable["weight_optimizer"], stable["weight_decay"], stable["clean_batch_size"]) == (
        "mean", "adam", 1e-4, 100)
    wrn = dict(options, script="wrn", weight_decay=1e-3)
    noisybench_check_options(options=wrn, config=config)
    assert (wrn["normalise"], wrn["weight_optimizer"], wrn["weight_decay"]) == ("sum", "sgd", 1e-3)
    with pytest.raises(ConfigError, match="mwnet.normalise"):
        noisybench_check_options(options=dict(options, normalise="max"), config=config)
    with pytest.raises(ConfigError, match="AdamW"):
        noisybench_check_options(options=dict(options), config={"batch_size": 100, "optimizer": {"name": "adamw"}})


# -- in real runs -----------------------------------------------------------------------------

FAST = ("noise=symmetric:0.4", "setting=clean", "data.epoch_subset=150", "batch_size=50")


def test_mwnet_resumes_exactly_and_records_its_weights(tmp_path):
    straight, _ = resumed_like_straight(tmp_path, "mwnet", "epochs=2", *FAST, crash_at=2)
    assert [h["stage"] for h in straight["history"]] == ["train"] * 2  # it trained on the clean set: no fine-tuning
    assert straight["config"]["mwnet"]["normalise"] == "mean" and straight["config"]["mwnet"]["clean_batch_size"] == 50
    curves = [h["weight_curve"] for h in straight["history"]]
    assert len(curves) == 2 and curves[0] != curves[1]  # V moved, and went on from its checkpoint
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert samples["weight"].between(0, 1).all() and (samples["weight"] != 1).sum() >= 150
    assert straight["efficiency"]["phase_seconds"]["meta"] > 0
    assert samples["flagged"].astype(bool).equals(samples["weight"] < 0.5 * samples["weight"].mean())


def test_no_clean_set_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mwnet needs a clean set.*setting=clean"):
        run_digits(tmp_path, "epochs=1", "noise=symmetric:0.4", method="mwnet")




def test_paper_config_is_the_wrn_script():
    from pathlib import Path

    import yaml

    from noisybench.api import make_config

    path = Path(__file__).parents[1] / "benchmarks" / "configs" / "cifar10_mwnet.yaml"
    assert yaml.safe_load(path.read_text())["noise"] == "uniform:0.4"  # GLC's uniform_mix_C, as the authors
    config = make_config("mwnet", config_file=path, overrides=["noise=symmetric:0.4"])  # the rest resolves as is
    assert (config["epochs"], config["batch_size"], config["lr_schedule"]["milestones"]) == (41, 100, [37, 39])
    assert config["data"]["clean_fraction"] * 50_000 == 1_000 and config["data"]["val_fraction"] == 0
    assert {k: config["mwnet"][k] for k in ("normalise", "weight_optimizer", "weight_decay", "clean_batch_size")} == {
        "normalise": "sum", "weight_optimizer": "sgd", "weight_decay": 5e-4, "clean_batch_size": 100}
