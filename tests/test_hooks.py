"""Every hook is documented and each one is shown to do its job in a real run."""

import inspect
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import run_digits
from noisybench import hookimpl, hookspecs
from noisybench.run import StepOutput

GUIDE = (Path(__file__).parents[1] / "docs" / "writing-a-method.md").read_text()  # where the hooks are documented
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("noisybench_"))


def test_hook_list_is_what_the_guide_documents():
    assert len(HOOKS) == 9
    for name in HOOKS:
        assert f"`{name}(" in GUIDE, f"{name} is not documented in docs/writing-a-method.md"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


class Spy:
    """Records every hook call; returns None so the method and the defaults still run."""

    def __init__(self):
        self.calls = Counter()
        self.epochs = []

    @hookimpl
    def noisybench_config_defaults(self):
        self.calls["noisybench_config_defaults"] += 1
        return {}

    @hookimpl
    def noisybench_check_options(self, options, config):
        self.calls["noisybench_check_options"] += 1
        assert options == config[config["method"]]

    @hookimpl
    def noisybench_setup(self, run):
        self.calls["noisybench_setup"] += 1

    @hookimpl
    def noisybench_epoch_start(self, run, epoch):
        self.calls["noisybench_epoch_start"] += 1
        self.epochs.append(epoch)

    @hookimpl
    def noisybench_train_step(self, run, batch):
        self.calls["noisybench_train_step"] += 1

    @hookimpl(tryfirst=True)
    def noisybench_loss(self, run, logits, features, labels, indices, epoch):
        self.calls["noisybench_loss"] += 1
        assert logits.shape == (len(labels), 10) and features.shape == (len(labels), 128)

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        self.calls["noisybench_epoch_end"] += 1

    @hookimpl
    def noisybench_sample_outputs(self, run):
        self.calls["noisybench_sample_outputs"] += 1

    @hookimpl
    def noisybench_eval_logits(self, run, images, logits):
        self.calls["noisybench_eval_logits"] += 1
        assert not run.model.training and logits.shape == (len(images), 10)  # an eval pass, the model's logits


def test_every_hook_is_called_at_its_point(tmp_path):
    spy = Spy()
    run_digits(tmp_path, "epochs=2", "batch_size=200", plugins=[spy])
    assert set(spy.calls) == set(HOOKS)
    steps = 2 * 6  # ceil(1078 / 200) batches per epoch
    assert spy.calls["noisybench_train_step"] == steps == spy.calls["noisybench_loss"]
    assert spy.calls["noisybench_setup"] == 1 == spy.calls["noisybench_check_options"]
    assert spy.epochs == [1, 2]
    assert spy.calls["noisybench_epoch_end"] == 2
    assert spy.calls["noisybench_sample_outputs"] == 3  # after each epoch, and before the last epoch_end
    assert spy.calls["noisybench_eval_logits"] == 2 + 1  # a val batch (359 < 512) per epoch, a test batch


class ManualStep:
    """Replaces the optimisation step: plain SGD by hand on half the loss."""

    def __init__(self):
        self.loss_calls = 0
        self.steps = 0

    @hookimpl
    def noisybench_train_step(self, run, batch):
        self.steps += 1
        logits, _ = run.model(batch.images)
        loss = 0.5 * F.cross_entropy(logits, batch.labels)
        run.optimizer.zero_grad()
        run.accelerator.backward(loss)
        run.optimizer.step()
        return StepOutput(loss.detach(), None)

    @hookimpl(tryfirst=True)
    def noisybench_loss(self):
        self.loss_calls += 1


def test_train_step_replaces_the_default_step(tmp_path):
    plugin = ManualStep()
    m = run_digits(tmp_path, "epochs=1", plugins=[plugin])
    assert plugin.steps == 17 and plugin.loss_calls == 0  # the default step never ran
    # the reported loss is the replacement's (half of CE), and no logits means no per-sample loss
    assert m["history"][0]["train_loss"] < 1.5
    assert pd.read_csv(tmp_path / "samples.csv")["train_loss"].isna().all()


class Oracle:
    """Publishes per-sample outputs built from the true labels, so the metrics are known."""

    def __init__(self, true, noisy):
        self.true, self.noisy = torch.as_tensor(true), torch.as_tensor(noisy)

    @hookimpl
    def noisybench_sample_outputs(self, run):
        wrong = self.true != self.noisy
        corrected = self.noisy.clone()
        corrected[wrong.nonzero()[::2, 0]] = self.true[wrong][::2]  # fix half the wrong labels
        return {"corrected_label": corrected, "noise_score": wrong.float(), "weight": 1 - wrong.float()}


def test_sample_outputs_feed_label_and_detection_metrics(tmp_path):
    from noisybench.datasets import build_dataset
    from noisybench.api import make_config

    config = make_config("ce", "digits", overrides=["noise=symmetric:0.4"])
    splits = build_dataset(config)
    oracle = Oracle(splits.true_labels, splits.train_labels)
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", plugins=[oracle])
    wrong = splits.true_labels != splits.train_labels
    fixed = (wrong.sum() + 1) // 2
    n = len(wrong)
    assert m["labels"]["noisy_accuracy"] == pytest.approx(1 - wrong.mean())
    assert m["labels"]["corrected_accuracy"] == pytest.approx((n - wrong.sum() + fixed) / n)
    assert m["labels"]["corrected_accuracy_initial"] == m["labels"]["corrected_accuracy"]
    assert m["labels"]["changed_fraction"] == pytest.approx(fixed / n)
    # flagged = corrected != noisy: all flagged are truly noisy, half the noisy are flagged
    assert m["detection"]["auc"] == 1.0 and m["detection"]["fdr"] == 0.0
    assert m["detection"]["recall"] == pytest.approx(fixed / wrong.sum())
    assert [h["label_accuracy"] for h in m["history"]] == [m["labels"]["corrected_accuracy"]] * 2
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert np.array_equal(samples["weight"].to_numpy(), 1 - wrong)


class Options:
    seen = None

    @hookimpl
    def noisybench_config_defaults(self):
        return {"temperature": 2.0}

    @hookimpl
    def noisybench_setup(self, run):
        Options.seen = dict(run.options)


def test_config_defaults_become_the_method_section(tmp_path):
    plugin = Options()
    run_digits(tmp_path, "epochs=1", "ce.temperature=3.5", plugins=[plugin])
    assert Options.seen == {"label_smoothing": 0.0, "temperature": 3.5}
    assert "temperature: 3.5" in (tmp_path / "config.yaml").read_text()


class FeatureProbe:
    """Uses the epoch-level phase as a relabelling method would."""

    def __init__(self):
        self.checked = False

    @hookimpl
    def noisybench_epoch_start(self, run, epoch):
        if epoch != 2:
            return
        with run.phase("features"):
            features = run.extract_features()
            some = run.extract_features(torch.tensor([5, 0, 5]))
        assert features.shape == (run.num_train, 128) and features.dtype == torch.float32
        assert torch.equal(some, features[[5, 0, 5]])
        assert run.model.training  # back in train mode, BatchNorm not frozen
        model = run.accelerator.unwrap_model(run.model).eval()
        with torch.no_grad():
            images = torch.stack([run.train_eval_set[i][0] for i in (0, 5)])
            _, direct = model(images)
        model.train()
        assert torch.allclose(direct, features[[0, 5]], atol=1e-5)
        run.log(probe="ok")
        self.checked = True


def test_epoch_start_can_extract_features_and_time_its_phase(tmp_path):
    probe = FeatureProbe()
    m = run_digits(tmp_path, "epochs=2", plugins=[probe])
    assert probe.checked
    assert m["efficiency"]["phase_seconds"]["features"] > 0
    assert m["history"][1]["probe"] == "ok" and "probe" not in m["history"][0]


class Counting:
    """Keeps per-sample state: how often each sample was trained on."""

    @hookimpl
    def noisybench_setup(self, run):
        run.state["count"] = torch.zeros(run.num_train, dtype=torch.long)

    @hookimpl
    def noisybench_loss(self, run, indices):
        run.state["count"][indices.cpu()] += 1

    @hookimpl
    def noisybench_sample_outputs(self, run):
        return {"count": run.state["count"]}


def test_run_state_is_checkpointed_and_restored(tmp_path):
    from conftest import CrashAt

    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path, "epochs=3", plugins=[Counting(), CrashAt(3)])
    run_digits(tmp_path, resume=True, plugins=[Counting()])
    counts = pd.read_csv(tmp_path / "samples.csv")["count"]
    assert (counts == 3).all()  # two epochs before the crash, restored, plus one after


def test_nested_phases_count_each_second_once():
    import time

    from noisybench.run import Run

    class Acc:
        device = torch.device("cpu")

    run = Run("x", {}, Acc(), None, None, None, None, None, torch.zeros(1), ["a"], 1)
    with run.phase("outer"):
        time.sleep(0.05)
        with run.phase("inner"):
            time.sleep(0.1)
    assert 0.1 <= run.phase_seconds["inner"] < 0.15
    assert 0.05 <= run.phase_seconds["outer"] < 0.1


def test_phase_timer_waits_for_the_device_once_per_outermost_phase():
    """A stand-in for CUDA events: stamps are step numbers, ``wait`` counts host syncs. A
    thousand inner phases (one per training step) cost one wait, and each unit of time is
    counted once, in the innermost phase."""
    from noisybench.timing import PhaseTimer

    class CountingClock:
        def __init__(self):
            self.now, self.waits = 0.0, 0

        def stamp(self):
            self.now += 1.0
            return self.now

        def wait(self, stamp):
            self.waits += 1

        def seconds(self, start, end):
            return end - start

    clock = CountingClock()
    timer = PhaseTimer(clock)
    with timer.phase("train"):
        for _ in range(1000):
            with timer.phase("meta"):
                pass
    assert clock.waits == 1
    # each inner phase spans one tick (its two stamps); train spans 2 * 1000 + 1 ticks
    assert timer.seconds["meta"] == 1000.0
    assert timer.seconds["train"] == 2001.0 - 1000.0
    with timer.phase("eval"):
        pass
    assert clock.waits == 2 and timer.seconds["eval"] == 1.0


def test_a_method_draws_further_augmented_views_of_its_batch(tmp_path):
    """run.views: fresh augmentations of the batch's samples (digits: a 1-pixel random crop),
    each the batch's shape, on the run's device, equal to the stored image up to the crop."""

    class Views:
        seen = []

        @hookimpl
        def noisybench_train_step(self, run, batch):
            if not self.seen:
                first, second = run.views(batch.indices, count=2)
                self.seen.append((batch.images.clone(), first, second, batch.indices.clone(), run.device,
                                  run.train_eval_set.images))
            return None

    spy = Views()
    run_digits(tmp_path, "epochs=1", plugins=[spy])
    images, first, second, indices, device, stored = spy.seen[0]
    assert first.shape == second.shape == images.shape and first.device == device
    assert not torch.equal(first, second)  # drawn afresh
    stored = stored[indices.cpu()]
    padded = torch.nn.functional.pad(stored, [1] * 4)  # every view is a 1-pixel shift of the stored image
    for view in (first, second):
        for k in range(len(view)):
            assert any(torch.equal(view[k], padded[k, :, t:t + 8, l:l + 8]) for t in range(3) for l in range(3))
