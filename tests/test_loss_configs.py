"""The robust losses' paper settings under benchmarks/configs resolve, with the authors' values."""

from __future__ import annotations

from pathlib import Path

from noisybench.api import make_config

FOLDER = Path(__file__).parents[1] / "benchmarks" / "configs"


def test_the_robust_losses_paper_configs_resolve():
    expected = {
        "sce": ("cifar10_sce", {"alpha": 0.1, "beta": 1.0}, "cnn9", 120),
        "apl": ("cifar10_apl", {"passive": "rce", "alpha": 1.0, "beta": 1.0}, "cnn9", 120),
        "gce": ("cifar10_gce", {"truncated": True, "prune_start": 40, "prune_every": 10}, "resnet34_cifar", 120),
        "gls": ("cifar10_gls", {"warmup_epochs": 120, "lr_after_warmup": 1e-6}, "resnet34_cifar", 220),
        "peer": ("cifar10_peer", {"draw": "batch"}, "resnet34_cifar", 300),
    }
    for method, (name, options, model, epochs) in expected.items():
        config = make_config(method, config_file=FOLDER / f"{name}.yaml")
        assert config["dataset"] == "cifar10" and config["noise"] == "symmetric:0.4" and config["batch_size"] == 128
        assert config["model"]["name"] == model and config["epochs"] == epochs
        assert options.items() <= config[method].items(), method
    peer = make_config("peer", config_file=FOLDER / "cifar10_peer.yaml")
    assert peer["peer"]["alpha"][:3] == [[20, 0.0, 0.0], [20, 0.0, 0.1], [50, 1.0, 2.0]]  # their f_alpha, resolved
