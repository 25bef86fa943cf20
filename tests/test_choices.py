"""Defaults that fit the user's data: image size and model from the images, the training
recipe from the presence of pretrained weights, and the choices said in one line."""

import pytest
import torch

from fixtures import write_jpeg, write_lines
from noisybench.api import make_config, run
from noisybench.datasets import build_dataset
from noisybench.choices import choose


def manifest(root, size, count=24):
    rows = ["path,label"]
    for i in range(count):
        write_jpeg(root / f"{i}.jpg", i % 2, size=size)
        rows.append(f"{i}.jpg,{'ab'[i % 2]}")
    write_lines(root / "m.csv", rows)
    return [f"data.root={root / 'm.csv'}", "data.num_workers=0"]


@pytest.mark.parametrize("size, image_size, model, shape", [((28, 28), 28, "small_cnn", (3, 28, 28)),
                                                             ((30, 20), 20, "small_cnn", (3, 20, 20)),
                                                             ((400, 300), 224, "resnet18", (3, 224, 224))])
def test_image_size_auto_picks_the_pipeline_from_the_images(tmp_path, size, image_size, model, shape):
    config = make_config("ce", "csv", overrides=manifest(tmp_path, size))
    assert config["data"]["image_size"] == "auto" and config["model"]["name"] == "auto"
    splits = build_dataset(config)
    choices = choose(config, splits, auto_size=True)
    assert config["data"]["image_size"] == image_size and config["model"]["name"] == model == choices["model"]
    image, _, _ = splits.train[0]
    assert tuple(image.shape) == shape
    if image_size == 224:  # the photo pipeline: short edge 256, then a 224 crop
        assert splits.train_eval.transform.transforms[1].size == [256]


def test_the_recipe_follows_the_presence_of_pretrained_weights(tmp_path):
    args = manifest(tmp_path, (28, 28))
    scratch = make_config("ce", "csv", overrides=args)
    assert scratch["recipe"] == "scratch"
    assert (scratch["epochs"], scratch["batch_size"], scratch["optimizer"]["lr"], scratch["optimizer"]["weight_decay"],
            scratch["lr_schedule"]["step_every"]) == (15, 64, 0.05, 5e-4, 10)
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    finetune = make_config("ce", "csv", overrides=[*args, f"model.pretrained_file={weights}"])
    assert finetune["recipe"] == "finetune"
    assert (finetune["optimizer"]["lr"], finetune["optimizer"]["weight_decay"], finetune["lr_schedule"]["step_every"]) \
        == (0.002, 5e-3, 5)  # the SMP paper's fine-tuning recipe
    mine = make_config("ce", "csv", overrides=[*args, "optimizer.lr=0.01", "epochs=3"])
    assert (mine["optimizer"]["lr"], mine["epochs"], mine["batch_size"]) == (0.01, 3, 64)  # the user's keys win
    forced = make_config("ce", "csv", overrides=[*args, "recipe=finetune"])
    assert forced["optimizer"]["lr"] == 0.002
    assert make_config("ce", "clothing1m")["optimizer"]["lr"] == 0.002  # a dataset's own defaults win too


def test_the_run_says_its_choices_in_one_line_and_records_them(tmp_path, capsys):
    args = manifest(tmp_path / "data", (28, 28))
    m = run("ce", "csv", tmp_path / "run", [*args, "epochs=1", "progress=true"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("choices:")]
    assert len(lines) == 1
    assert "model small_cnn (auto), 28-pixel inputs (data.image_size=auto" in lines[0]
    assert "recipe scratch (no pretrained weights): 1 epochs, batch 64, sgd lr 0.05" in lines[0]
    assert m["choices"] == {"model": "small_cnn", "model_auto": True, "input_size": 28, "image_size_auto": True,
                            "recipe": "scratch", "threads": 1, "threads_why": "auto: one for 28-pixel inputs"}
    assert lines[0].endswith("; 1 CPU thread(s) (auto: one for 28-pixel inputs)")
    assert m["config"]["data"]["image_size"] == 28 and m["config"]["model"]["name"] == "small_cnn"


def test_a_slow_epoch_is_announced(tmp_path, capsys, monkeypatch):
    import noisybench.engine

    monkeypatch.setattr(noisybench.engine, "SLOW_EPOCH_SECONDS", 0.0)
    run("ce", "digits", tmp_path, ["epochs=1", "progress=false", "batch_size=32"])
    out = capsys.readouterr().out
    assert out.count("warning: an epoch will take about") == 1 and "34 batches of 32 8-pixel images" in out
