"""The GPU fast path, tested on the CPU: device settings, loaders, no host sync per step."""

from __future__ import annotations

import torch
from conftest import run_digits

from noisybench.api import make_config
from noisybench.engine import device_settings, make_optimizer
from noisybench.loaders import loader_options


def test_channels_last_and_compile_train_on_the_cpu_to_the_same_result(tmp_path):
    plain = run_digits(tmp_path / "plain", "epochs=2")
    nhwc = run_digits(tmp_path / "nhwc", "epochs=2", "model.channels_last=true")
    compiled = run_digits(tmp_path / "compiled", "epochs=2", "model.compile=true")
    assert nhwc["efficiency"]["device_settings"] == {"channels_last": True, "compile": False}
    assert compiled["efficiency"]["device_settings"] == {"channels_last": False, "compile": True}
    for other in (nhwc, compiled):
        assert abs(other["test"]["accuracy"] - plain["test"]["accuracy"]) < 0.02
        assert abs(other["history"][-1]["train_loss"] - plain["history"][-1]["train_loss"]) < 1e-3
        assert other["fingerprint"] == plain["fingerprint"]  # a speed setting, not another experiment


def test_device_settings_resolve_auto_by_device():
    config = make_config("ce", "digits")
    assert device_settings(config, cuda=True)["channels_last"] is True
    assert device_settings(config, cuda=False)["channels_last"] is False
    config["model"]["channels_last"] = False
    assert device_settings(config, cuda=True)["channels_last"] is False


def test_fused_optimiser_on_a_gpu_only():
    model = torch.nn.Linear(3, 2)
    for name in ("sgd", "adamw"):
        opt = {"name": name, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}
        assert make_optimizer(opt, model, cuda=True).defaults["fused"] is True
        assert not make_optimizer(opt, model, cuda=False).defaults.get("fused")


def test_loader_options_have_no_worker_cap_and_prefetch(monkeypatch):
    from noisybench.datasets.images import ImageFiles

    monkeypatch.setattr("os.cpu_count", lambda: 32)
    files = ImageFiles(["a.jpg"], [0], transform=None)
    config = make_config("ce", "digits", overrides=["data.prefetch_factor=6"])
    options = loader_options(config, files, cuda=True, processes=2)
    assert options == {"num_workers": 16, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 6}
    assert loader_options(config, torch.utils.data.TensorDataset(torch.zeros(2)), cuda=False,
                          processes=1) == {"num_workers": 0, "pin_memory": False}


class HostSyncs:
    """Counts the calls that copy a device value to the host (each a sync on a GPU)."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counting(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counting)


def syncs_in_training_epochs(monkeypatch, tmp_path, method, batch_size, *overrides):
    """Host syncs counted inside the core's train_epoch (steps plus its end-of-epoch sums)."""
    from noisybench.engine import Trainer

    counted = {"syncs": 0}
    original = Trainer.train_epoch

    def train_epoch(self, epoch):
        with monkeypatch.context() as patch:
            syncs = HostSyncs(patch)
            result = original(self, epoch)
        counted["syncs"] += syncs.count
        return result

    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    run_digits(tmp_path / f"{method}{batch_size}", "epochs=2", f"batch_size={batch_size}", *overrides, method=method)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    return counted["syncs"]


def test_no_host_sync_per_step_in_the_core_or_the_shipped_methods(monkeypatch, tmp_path):
    """8x the steps, the same number of host syncs: none happens per step."""
    for method, overrides in (("ce", ()), ("smp", ("noise=symmetric:0.4", "smp.start_epoch=1")),
                              ("lsw", ("noise=symmetric:0.4", "setting=clean")),
                              ("sinet", ("noise=symmetric:0.4", "setting=verify"))):
        few = syncs_in_training_epochs(monkeypatch, tmp_path, method, 256, *overrides)
        many = syncs_in_training_epochs(monkeypatch, tmp_path, method, 32, *overrides)
        assert few == many, (method, few, many)


def test_run_loader_is_kept_and_its_order_depends_on_the_seed_alone(tmp_path):
    from noisybench.run import Run

    class Acc:
        device = torch.device("cpu")

    data = torch.utils.data.TensorDataset(torch.arange(20))
    run = Run("x", {}, Acc(), None, None, None, None, None, torch.zeros(1), ["a"], 1)
    first = run.loader(data, 5, shuffle=True, seed=3)
    order = [int(i) for (batch,) in first for i in batch]
    list(run.loader(data, 5, shuffle=True, seed=4))  # another epoch's order in between
    again = run.loader(data, 5, shuffle=True, seed=3)
    assert again is first  # one loader (and one set of workers) for the run
    assert [int(i) for (batch,) in again for i in batch] == order
    fresh = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert [int(i) for (batch,) in fresh for i in batch] == order  # as a new loader with that seed
