"""Learn Sample Weights: the meta-gradient against finite differences and torch.func, then runs."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from conftest import noisybench_subprocess, read_metrics, resumed_like_straight, run_digits
from noisybench.errors import ConfigError
from noisybench_lsw.meta import full_meta_step, head_meta_step, jvp_meta_step, update_weights


class TinyNet(nn.Module):
    """Returns (logits, features) like noisybench's Classifier; no BatchNorm, so the
    functional reference below sees exactly the same computation."""

    def __init__(self, dim=5, hidden=7, classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features


def toy_batch(seed=0, n=6, nc=4, dim=5, classes=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x, xc = torch.randn(n, dim, generator=g, dtype=dtype), torch.randn(nc, dim, generator=g, dtype=dtype)
    y, yc = torch.randint(0, classes, (n,), generator=g), torch.randint(0, classes, (nc,), generator=g)
    alpha = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    return x, y, alpha, xc, yc


def separable_toy(g):
    """300 points in three clusters, 90 of their labels moved to the next class, and 60 clean
    points: a toy on which learned sample weights must fall on the moved labels."""
    centres = torch.tensor([[2.0, 0.0, 0, 0, 0], [-2.0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0]])
    true = torch.arange(300) % 3
    x = centres[true] + 0.5 * torch.randn(300, 5, generator=g)
    noisy = true.clone()
    flipped = torch.randperm(300, generator=g)[:90]
    noisy[flipped] = (true[flipped] + 1) % 3
    clean_y = torch.arange(60) % 3
    clean_x = centres[clean_y] + 0.5 * torch.randn(60, 5, generator=g)
    return x, true, noisy, clean_x, clean_y


def clean_loss_after_step(model, x, y, alpha, xc, yc, lr):
    """L_clean(Theta'(alpha)) written out with torch.func, eq. 1 and 2."""
    params = dict(model.named_parameters())
    logits, _ = functional_call(model, params, (x,))
    loss = (alpha * F.cross_entropy(logits, y, reduction="none")).sum() / alpha.sum()
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    fast = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    clean_logits, _ = functional_call(model, fast, (xc,))
    return F.cross_entropy(clean_logits, yc, reduction="sum")


@pytest.mark.parametrize("meta", [full_meta_step, jvp_meta_step])
def test_meta_gradient_matches_finite_differences(meta):
    torch.manual_seed(0)
    model = TinyNet().double()
    x, y, alpha, xc, yc = toy_batch()
    result = meta(model, x, y, alpha, xc, yc, lr=0.5)
    eps = 1e-6
    for i in range(len(alpha)):
        up, down = alpha.clone(), alpha.clone()
        up[i] += eps
        down[i] -= eps
        numeric = (clean_loss_after_step(model, x, y, up, xc, yc, 0.5) - clean_loss_after_step(model, x, y, down, xc, yc, 0.5)) / (2 * eps)
        assert result.alpha_grad[i].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-9)


def test_higher_matches_torch_func():
    torch.manual_seed(1)
    model = TinyNet()
    x, y, alpha, xc, yc = toy_batch(seed=3, dtype=torch.float32)
    result = full_meta_step(model, x, y, alpha, xc, yc, lr=0.1)
    alpha_ref = alpha.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(clean_loss_after_step(model, x, y, alpha_ref, xc, yc, 0.1), alpha_ref)
    assert torch.allclose(result.alpha_grad, reference, rtol=1e-5, atol=1e-7)
    # and the gradient for the real step is the weighted-loss gradient with alpha as it was
    logits, _ = model(x)
    loss = (alpha * F.cross_entropy(logits, y, reduction="none")).sum() / alpha.sum()
    for got, want in zip(result.grads, torch.autograd.grad(loss, list(model.parameters()))):
        assert torch.allclose(got, want, atol=1e-7)


class ConvNet(nn.Module):
    """Convolution, BatchNorm (batch statistics in training), dropout: everything that makes
    the per-sample losses depend on the batch and on the random state."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Dropout(0.3))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        features = self.body(x)
        return self.head(features), features


@pytest.mark.parametrize("frozen", [False, True])
def test_jvp_meta_gradient_equals_higher_in_float64(frozen):
    import copy

    torch.manual_seed(4)
    model = ConvNet().double()
    if frozen:  # a frozen first layer neither moves in Theta' nor carries a tangent
        model.body[0].requires_grad_(False)
    g = torch.Generator().manual_seed(9)
    x, xc = torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    y, yc = torch.randint(0, 3, (8,), generator=g), torch.randint(0, 3, (5,), generator=g)
    alpha = torch.rand(8, generator=g, dtype=torch.float64)
    outcomes = []
    for meta in (full_meta_step, jvp_meta_step):
        torch.manual_seed(11)
        result = meta(copy.deepcopy(model), x, y, alpha, xc, yc, lr=0.3)
        outcomes.append((result, torch.rand(4)))  # the random stream after the step, too
    (reference, stream_a), (fast, stream_b) = outcomes
    assert reference.alpha_grad.abs().max() > 1e-3  # not trivially zero
    assert torch.allclose(fast.alpha_grad, reference.alpha_grad, rtol=1e-10, atol=1e-14)
    for a, b in zip(fast.grads, reference.grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    assert torch.equal(fast.logits, reference.logits) and torch.equal(fast.loss, reference.loss)
    assert all(torch.equal(fast.buffers[k], reference.buffers[k]) for k in reference.buffers)
    assert torch.equal(stream_a, stream_b)


def test_head_meta_gradient_is_the_full_one_with_the_backbone_frozen():
    torch.manual_seed(2)

    class Wrapped(nn.Module):  # head_meta_step finds the classifier through model.backbone
        def __init__(self):
            super().__init__()
            self.net = TinyNet().double()
            self.backbone = self

        def get_classifier(self):
            return self.net.head

        def forward(self, x):
            return self.net(x)

    model = Wrapped()
    x, y, alpha, xc, yc = toy_batch(seed=5)
    head = head_meta_step(model, x, y, alpha, xc, yc, lr=0.3)
    for p in model.net.body.parameters():
        p.requires_grad_(False)
    full = full_meta_step(model.net, x, y, alpha, xc, yc, lr=0.3)
    assert torch.allclose(head.alpha_grad, full.alpha_grad, atol=1e-10)


@pytest.mark.parametrize("meta", [full_meta_step, jvp_meta_step, head_meta_step])
def test_the_clean_batch_leaves_batchnorm_statistics_alone(meta):
    """Running statistics are those after the noisy forward, in both meta modes."""
    import copy

    torch.manual_seed(3)

    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh())
            self.head = nn.Linear(7, 3)

        def forward(self, x):
            features = self.body(x)
            return self.head(features), features

    class Wrapped(nn.Module):  # head_meta_step finds the classifier through model.backbone
        def __init__(self):
            super().__init__()
            self.net = Normed()
            self.backbone = self

        def get_classifier(self):
            return self.net.head

        def forward(self, x):
            return self.net(x)

    model = Wrapped() if meta is head_meta_step else Normed()
    reference = copy.deepcopy(model)
    x, y, alpha, xc, yc = toy_batch(seed=7, dtype=torch.float32)
    reference(x)  # the noisy forward alone
    result = meta(model, x, y, alpha, xc + 5.0, yc, lr=0.1)  # a clean batch far from the noisy one
    expected = dict(reference.named_buffers())
    assert set(result.buffers) == set(expected)
    for name, buffer in expected.items():
        assert torch.equal(result.buffers[name], buffer), name


@pytest.mark.parametrize("rule", ["logit", "printed"])
def test_weights_stay_in_zero_one(rule):
    g = torch.Generator().manual_seed(0)
    alpha = torch.full((1000,), 0.5)
    logit = torch.zeros(1000)
    for _ in range(20):
        grad = torch.randn(1000, generator=g) * 50
        alpha, logit = update_weights(alpha, logit, grad, step=10.0, rule=rule)
        assert ((alpha >= 0) & (alpha <= 1)).all() and torch.isfinite(alpha).all()


def test_printed_rule_by_hand():
    alpha, _ = update_weights(torch.tensor([0.5, 0.9]), torch.zeros(2), torch.tensor([0.0, 0.2]), step=1.0,
                              rule="printed")
    assert alpha.tolist() == pytest.approx([0.5, float(torch.sigmoid(torch.tensor(0.9 - 0.2 - 0.5)))])
    alpha, logit = update_weights(torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([0.3]), step=2.0, rule="logit")
    assert logit.item() == pytest.approx(-0.6) and alpha.item() == pytest.approx(float(torch.sigmoid(torch.tensor(-0.6))))


def test_flipped_samples_lose_weight_on_a_separable_toy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, true, noisy, clean_x, clean_y = separable_toy(g)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    alpha, logit = torch.full((300,), 0.5), torch.zeros(300)
    for epoch in range(15):
        for batch in torch.randperm(300, generator=g).split(30):
            result = full_meta_step(model, x[batch], noisy[batch], alpha[batch], clean_x, clean_y, lr=0.2)
            if epoch >= 2:
                alpha[batch], logit[batch] = update_weights(alpha[batch], logit[batch], result.alpha_grad, 5.0, "logit")
            for p, grad in zip(model.parameters(), result.grads):
                p.grad = grad
            optimizer.step()
    is_flipped = noisy != true
    assert alpha[is_flipped].mean() < 0.3 < 0.7 < alpha[~is_flipped].mean()


# -- in real runs -----------------------------------------------------------------------------


def test_lsw_weights_detect_noise_on_digits(tmp_path):
    m = run_digits(tmp_path, "epochs=4", "noise=symmetric:0.4", "setting=clean", "lsw.start_epoch=2", method="lsw")
    assert m["num_train"] == 970 and m["detection"]["auc"] > 0.85
    assert m["detection"]["f1"] > 0.6
    assert [h["stage"] for h in m["history"]] == ["train"] * 4  # lsw used the clean set: no fine-tuning stage
    assert m["history"][0]["detection_auc"] is None or m["history"][0]["detection_auc"] == 0.5
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert samples["weight"].between(0, 1).all()
    assert samples.loc[samples.is_noisy == 1, "weight"].mean() < samples.loc[samples.is_noisy == 0, "weight"].mean()
    assert (tmp_path / "weight_histograms.png").stat().st_size > 1000
    assert m["efficiency"]["phase_seconds"]["meta"] > 0


def test_no_clean_set_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="lsw needs a clean set.*setting=clean"):
        run_digits(tmp_path, "epochs=1", "noise=symmetric:0.4", method="lsw")


def test_adamw_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="AdamW"):
        run_digits(tmp_path, "epochs=1", "setting=clean", "optimizer.name=adamw", method="lsw")


def test_retrain_trains_only_on_kept_samples(tmp_path):
    run_digits(tmp_path / "joint", "epochs=1", "setting=clean", "noise=symmetric:0.4", method="lsw")
    samples = pd.read_csv(tmp_path / "joint" / "samples.csv")
    samples["weight"] = np.where(samples["noisy_label"] < 5, 1.0, 0.0)  # keep classes 0-4 only
    samples.sample(frac=1.0, random_state=0).to_csv(tmp_path / "joint" / "samples.csv", index=False)  # re-sorted
    run_digits(tmp_path / "retrain", "epochs=3", "setting=clean", "noise=symmetric:0.4", "lsw.mode=retrain",
               f"lsw.weights_from={tmp_path / 'joint'}", "lsw.retrain_clean=false", method="lsw")
    confusion = pd.read_csv(tmp_path / "retrain" / "confusion_matrix.csv", index_col=0).to_numpy()
    assert confusion[:, 5:].sum() == 0  # never trained towards a dropped label: never predicts one
    assert confusion[:, :5].sum() == 360


def test_two_processes_keep_weights_with_their_samples(tmp_path):
    out = tmp_path / "ddp"
    proc = noisybench_subprocess("run", "--method", "lsw", "--dataset", "digits", "--output", str(out), "epochs=3",
                                 "progress=false", "noise=symmetric:0.4", "setting=clean", "lsw.start_epoch=2",
                                 "batch_size=50", "lsw.clean_batch_size=50", processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_metrics(out)
    assert m["environment"]["num_processes"] == 2
    assert m["detection"]["auc"] > 0.85  # weights attached to the wrong samples would score ~0.5


def test_lsw_resumes_exactly(tmp_path):
    resumed_like_straight(tmp_path, "lsw", "epochs=3", "noise=symmetric:0.4", "setting=clean", "lsw.start_epoch=2",
                          "lsw.meta_layers=head")
    a, b = pd.read_csv(tmp_path / "a" / "samples.csv"), pd.read_csv(tmp_path / "b" / "samples.csv")
    assert np.allclose(a["weight"], b["weight"])


def test_lsw_in_bf16(tmp_path):
    """Under mixed precision Accelerate wraps the model's forward; the meta step must still
    differentiate through the fast weights (the weights of the trained samples move)."""
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "setting=clean", "lsw.start_epoch=2",
                   "mixed_precision=bf16", "data.epoch_subset=100", "batch_size=50", "lsw.clean_batch_size=50",
                   method="lsw")
    assert m["environment"]["mixed_precision"] == "bf16"
    weights = pd.read_csv(tmp_path / "samples.csv")["weight"]
    assert weights.between(0, 1).all() and (weights != 0.5).sum() >= 50


def test_fp16_is_refused(tmp_path):
    from noisybench_lsw import noisybench_setup

    class Acc:
        mixed_precision = "fp16"

    run = type("R", (), {"options": {"weight_rule": "logit", "meta_layers": "all", "mode": "joint", "start_epoch": 1},
                         "num_epochs": 2,
                         "optimizer": torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
                         "accelerator": Acc()})()
    with pytest.raises(ConfigError, match="fp16"):
        noisybench_setup(run)


def test_both_exact_meta_gradients_learn_the_same_weights(tmp_path):
    """The run's default (jvp) and the reference (higher) give one training to float32 rounding."""
    common = ("epochs=2", "noise=symmetric:0.4", "setting=clean", "lsw.start_epoch=2", "data.epoch_subset=200",
              "batch_size=50", "lsw.clean_batch_size=50")
    jvp = run_digits(tmp_path / "jvp", *common, method="lsw")
    ref = run_digits(tmp_path / "higher", *common, "lsw.meta_gradient=higher", method="lsw")
    assert jvp["config"]["lsw"]["meta_gradient"] == "jvp"
    a, b = pd.read_csv(tmp_path / "jvp" / "samples.csv"), pd.read_csv(tmp_path / "higher" / "samples.csv")
    assert (a["weight"] != 0.5).sum() >= 150  # the weights did move
    assert np.allclose(a["weight"], b["weight"], atol=1e-4)
