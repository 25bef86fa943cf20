"""PES (Bai et al. 2021) against PES_cs.py and networks/ResNet.py of tmllab/PES."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess, resumed_like_straight
from noisybench_pes import confident_loss, noisybench_check_options
from noisybench_pes.layers import last_block_names
from noisybench_pes.stages import class_weights

from noisybench import hookimpl


@pytest.fixture(autouse=True)
def no_weight_plot(monkeypatch):
    """The runs' weight histograms (a second of matplotlib each) are no part of these checks."""
    monkeypatch.setattr("noisybench.plots.weight_histograms", lambda *args, **kwargs: None)


def test_class_weights_and_weighted_loss_by_hand():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    confident = torch.tensor([True, True, True, True, False, False])  # n = (3, 1, 0)
    weights = class_weights(labels, confident, 3)
    assert weights.tolist() == pytest.approx([2 / 3, 2.0, 0.0])  # mean(3, 1) / n_c, 0 where none
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    batch_labels = torch.tensor([0, 1, 2])
    mask = torch.tensor([True, True, False])
    ce = torch.nn.functional.cross_entropy(logits, batch_labels, reduction="none")
    expected = (2 / 3 * ce[0] + 2.0 * ce[1]) / (2 / 3 + 2.0)  # torch's weighted mean: sum w l / sum w
    assert confident_loss(logits, batch_labels, mask, weights).item() == pytest.approx(expected.item())
    assert confident_loss(logits, batch_labels, torch.zeros(3, dtype=torch.bool), weights).item() == 0


def test_last_block_is_layer4_of_a_resnet_and_the_last_convs_of_the_small_cnns():
    from noisybench.models import CNN9, SmallCNN

    class ResNetLike(torch.nn.Module):  # timm's ResNet names its blocks layer1 ... layer4
        def __init__(self):
            super().__init__()
            self.layer3, self.layer4 = torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 1)

    assert last_block_names(ResNetLike(), "auto") == ["layer4"]
    small = SmallCNN()
    names = last_block_names(small, "auto")
    assert [type(small.get_submodule(n)).__name__ for n in names] == ["Conv2d", "BatchNorm2d"]
    assert small.get_submodule(names[0]).out_channels == small.num_features  # the last conv
    cnn9 = CNN9()
    convs = [cnn9.get_submodule(n) for n in last_block_names(cnn9, "auto") if "Conv" in type(cnn9.get_submodule(n)).__name__]
    assert [(c.in_channels, c.out_channels, c.padding) for c in convs] == [(256, 512, (0, 0)), (512, 256, (0, 0)),
                                                                           (256, 128, (0, 0))]
    assert last_block_names(small, ["features.4"]) == ["features.4"]


def test_t1_auto_is_the_authors_per_dataset():
    def t1(dataset, epochs):
        options = {"T1": "auto", "T2": 7, "T3": 5, "pes_lr": 1e-4, "last_block": "auto",
                   "selection_views": "train_views", "refined_layers": "fixed"}
        noisybench_check_options(options=options, config={"dataset": dataset, "epochs": epochs})
        return options["T1"]

    assert (t1("cifar10", 200), t1("cifar100", 200), t1("digits", 200), t1("digits", 15)) == (25, 30, 25, 2)


class Snapshots:
    """The model's weights at the start of each epoch (before the method's epoch_start) and at the end."""

    def __init__(self):
        self.weights = {}

    def take(self, run, key):
        model = run.accelerator.unwrap_model(run.model)
        self.weights[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @hookimpl
    def noisybench_epoch_start(self, run, epoch):
        self.take(run, epoch)

    @hookimpl
    def noisybench_epoch_end(self, run, epoch):
        self.take(run, f"end{epoch}")


def test_which_layers_move_in_each_stage_and_resume_is_exact(tmp_path):
    """T1 = 1: epoch 2 re-initialises and refines the last block and classifier, everything else
    fixed and the run's optimiser idle; epoch 3 trains the earlier layers on confident samples while
    the refined layers stay as they are (the authors' optimiser lost them). A run killed at epoch 3
    and resumed ends as the straight one."""
    snaps = Snapshots()
    record, _ = resumed_like_straight(tmp_path, "pes", "epochs=3", "noise=symmetric:0.4", "pes.T1=1", "pes.T2=1",
                                      "pes.T3=1", crash_at=3, watch=[snaps])
    before, refined, final = snaps.weights[2], snaps.weights[3], snaps.weights["end3"]

    def moved(a, b, name):
        return not torch.equal(a[f"backbone.{name}"], b[f"backbone.{name}"])

    assert not moved(before, refined, "features.0.weight") and not moved(before, refined, "features.4.weight")
    assert moved(before, refined, "features.1.running_mean")  # train mode: BatchNorm statistics still move
    assert moved(before, refined, "features.8.weight") and moved(before, refined, "fc.weight")
    assert moved(refined, final, "features.0.weight") and moved(refined, final, "features.4.weight")
    assert not moved(refined, final, "features.8.weight") and not moved(refined, final, "fc.weight")
    assert record["history"][1]["samples_trained"] == 0 and len(record["history"][1]["pes_refine_losses"]) == 2
    confident = record["history"][2]["pes_confident"]
    samples = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert (samples["flagged"] == 0).sum() == confident and samples["weight"].isin([0, 1]).all()


def test_pes_under_two_processes(tmp_path):
    """The refinement's own passes keep both processes in step (one re-initialisation for all),
    and the selection gathers every sample's prediction."""
    proc = noisybench_subprocess("run", "--method", "pes", "--dataset", "digits", "--output", str(tmp_path),
                                 "epochs=2", "noise=symmetric:0.4", "pes.T1=0", "pes.T2=1", "pes.T3=1",
                                 "progress=false", processes=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"]["num_processes"] == 2
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert (samples["flagged"] == 0).sum() == record["history"][1]["pes_confident"] > 0


def test_paper_config_resolves():
    from pathlib import Path

    from noisybench.api import make_config

    config = make_config("pes", config_file=Path(__file__).parents[1] / "benchmarks" / "configs" / "cifar10_pes.yaml")
    assert (config["noise"], config["model"]["name"], config["epochs"]) == ("symmetric:0.5", "resnet18_cifar", 200)
    assert config["lr_schedule"]["milestones"] == [100, 150] and config["optimizer"]["weight_decay"] == 1e-4
    assert [config["pes"][k] for k in ("T1", "T2", "T3")] == [25, 7, 5]
