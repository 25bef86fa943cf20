"""The GPU fast path, tested on the CPU: device settings, loaders, no host sync per step."""

from __future__ import annotations

import numpy as np
import torch
from conftest import run_digits

from noisybench.api import make_config
from noisybench.choices import device_settings
from noisybench.optim import make_optimizer
from noisybench.loaders import loader_options


def test_channels_last_and_compile_train_on_the_cpu_to_the_same_result(tmp_path):
    plain = run_digits(tmp_path / "plain", "epochs=2")
    nhwc = run_digits(tmp_path / "nhwc", "epochs=2", "model.channels_last=true")
    compiled = run_digits(tmp_path / "compiled", "epochs=2", "model.compile=true")
    assert nhwc["efficiency"]["device_settings"] == {"channels_last": True, "compile": False, "decoder": "in memory"}
    assert compiled["efficiency"]["device_settings"] == {"channels_last": False, "compile": True, "decoder": "in memory"}
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
    assert options == {"num_workers": 16, "pin_memory": True, "persistent_workers": True, "prefetch_factor": 6,
                       "multiprocessing_context": "forkserver"}  # several processes: workers not forked beside gloo
    assert "multiprocessing_context" not in loader_options(config, files, cuda=True, processes=1)
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
                              ("sinet", ("noise=symmetric:0.4", "setting=verify")),
                              ("elr", ("noise=symmetric:0.4",)), ("coteaching", ("noise=symmetric:0.4",))):
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
    assert order == torch.randperm(20, generator=torch.Generator().manual_seed(3)).tolist()  # the seed's permutation
    second = [int(i) for (batch,) in again for i in batch]  # the next pass continues that generator
    with_worker = Run("x", {}, Acc(), None, None, None, None, None, torch.zeros(1), ["a"], 1,
                      loader_options={"num_workers": 1, "persistent_workers": True})
    loader = with_worker.loader(data, 5, shuffle=True, seed=3)
    assert [[int(i) for (batch,) in loader for i in batch] for _ in range(2)] == [order, second]  # workers or none
    with_worker._loaders.clear()


def test_the_gpu_decoder_is_selected_only_with_cuda(monkeypatch):
    from noisybench.datasets import devicedecode

    monkeypatch.setattr(devicedecode, "cuda_available", lambda: False)
    assert devicedecode.resolve_decoder("gpu", 224) == "scaled"
    monkeypatch.setattr(devicedecode, "cuda_available", lambda: True)
    assert devicedecode.resolve_decoder("gpu", 224) == "device"
    assert devicedecode.resolve_decoder("gpu", 32) == "scaled"  # the small-image pipeline decodes on the host
    assert devicedecode.resolve_decoder("torchvision", 224) == "torchvision"


def test_device_decoding_equals_the_host_pipeline(tmp_path, monkeypatch):
    """The device path run on the CPU: centre crops equal the host pipeline's pixel for pixel;
    training crops are 224-pixel windows of the resized image, fixed per item however often
    the batch is forwarded; PNGs and unreadable files come decoded from the worker."""
    from fixtures import write_corrupt, write_jpeg
    from PIL import Image

    from noisybench.datasets import devicedecode
    from noisybench.datasets.images import IMAGENET_MEAN, IMAGENET_STD, photo_files
    from noisybench.loaders import loader_options
    from noisybench.models import InputNormalize

    paths = []
    for i, size in enumerate([(300, 260), (260, 400), (500, 300)]):
        write_jpeg(tmp_path / f"{i}.jpg", i, size=size)
        paths.append(str(tmp_path / f"{i}.jpg"))
    Image.new("RGB", (280, 300), (10, 200, 30)).save(tmp_path / "3.png")
    write_corrupt(tmp_path / "4.jpg")
    paths += [str(tmp_path / "3.png"), str(tmp_path / "4.jpg")]
    config = make_config("ce", "digits", overrides=["data.decoder=gpu", "data.image_size=224"])
    host = photo_files(make_config("ce", "digits", overrides=["data.image_size=224"]), paths, np.zeros(5), train=False)
    monkeypatch.setattr(devicedecode, "cuda_available", lambda: True)
    device_eval = photo_files(config, paths, np.zeros(5), train=False)
    device_train = photo_files(config, paths, np.zeros(5), train=True)
    assert device_eval.decoder == "device"
    options = loader_options(config, device_eval, cuda=False, processes=1)
    normalize = InputNormalize((IMAGENET_MEAN, IMAGENET_STD))
    (batch, labels, indices), = torch.utils.data.DataLoader(device_eval, batch_size=5, **options)
    assert isinstance(batch, devicedecode.EncodedBatch) and indices.tolist() == [0, 1, 2, 3, 4]
    reference = torch.stack([host[i][0] for i in range(5)])
    assert torch.equal(normalize(batch), normalize(reference))
    assert bool(device_eval.corrupt[4]) and not bool(device_eval.corrupt[:4].any())
    (train_batch, *_), = torch.utils.data.DataLoader(device_train, batch_size=5, **options)
    first = normalize(train_batch)
    assert first.shape == (5, 3, 224, 224) and torch.equal(normalize(train_batch), first)
    from torchvision.transforms.v2 import functional

    from noisybench.datasets.images import quiet_torchvision_io

    with quiet_torchvision_io():
        from torchvision.io import decode_image

        resized = functional.resize(decode_image(paths[0]), 256, antialias=True)  # 256 x 295, as the pipeline resizes
    windows = resized.unfold(1, 224, 1).unfold(2, 224, 1)  # every 224 crop of it
    assert train_batch[0].crop is not None and device_eval[0][0].crop is None
    decoded = normalize.decode(train_batch)[0]
    assert any(torch.equal(decoded, windows[:, t, l]) or torch.equal(decoded.flip(-1), windows[:, t, l])
               for t in range(windows.shape[1]) for l in range(windows.shape[2]))


def test_runs_train_with_the_device_decoder(tmp_path, monkeypatch):
    """ce and lsw (which forwards each noisy batch more than once) on the clothing1m fixture,
    JPEGs decoded by the device path (here the CPU), the corrupt image counted as raw."""
    from fixtures import write_clothing1m

    from noisybench.api import run
    from noisybench.datasets import devicedecode

    monkeypatch.setattr(devicedecode, "cuda_available", lambda: True)
    write_clothing1m(tmp_path / "data", corrupt=True)
    common = ["progress=false", "model.name=small_cnn", "data.image_size=96", "epochs=1", "batch_size=16",
              "data.num_workers=0", f"data.root={tmp_path / 'data'}", "data.decoder=gpu"]
    for method, extra in (("ce", []), ("lsw", ["setting=clean", "lsw.clean_batch_size=8"])):
        record = run(method, "clothing1m", tmp_path / method, [*common, *extra])
        assert record["efficiency"]["device_settings"]["decoder"] == "device"
        assert record["data"]["corrupt_images"]["train"] == 1
        assert record["test"]["accuracy"] is not None and len(record["history"]) == 1
