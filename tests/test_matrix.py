"""Every shipped method in every setting on a tiny copy of every kind of dataset, one epoch
each: each run finishes and writes a record whose label fields agree with samples.csv."""

import json

import numpy as np
import pandas as pd
import pytest

from fixtures import write_cifar, write_clothing1m, write_food101n, write_jpeg, write_lines
from noisybench.api import run
from noisybench.errors import ConfigError

SMALL = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=1", "batch_size=16",
         "data.num_workers=0", "data.clean_fraction=0.2"]
METHODS = {  # each method acts within the one epoch
    "ce": [], "smp": ["smp.start_epoch=1", "smp.max_changed=null"],
    "lsw": ["lsw.start_epoch=1", "lsw.clean_batch_size=8"],
    "sinet": ["sinet.start_epoch=1", "sinet.initial_top_k=2"],
}
DATASETS = ["digits", "csv", "imagefolder", "clothing1m", "food101n", "cifar10"]
SETTINGS = ["noisy", "verify", "clean"]


def side_info(path, names):
    """A class hierarchy of the user's own (no WordNet, no text model): every class under 'thing'."""
    write_lines(path, ["classes:", *[f"  '{name}': {{parent: thing}}" for name in names]])
    return [f"sinet.side_info={path}", "sinet.graph=hierarchy"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """key=value arguments per dataset, pointing at tiny trees in each real format."""
    root = tmp_path_factory.mktemp("matrix")
    args = {"digits": ["noise=symmetric:0.4"]}
    rows = ["path,label"]
    for i in range(30):
        write_jpeg(root / "csv" / f"{i}.jpg", i % 3)
        write_jpeg(root / "folder" / "abc"[i % 3] / f"{i}.jpg", i % 3)
        rows.append(f"{i}.jpg,{'abc'[i % 3]}")
    write_lines(root / "csv" / "m.csv", rows)
    args["csv"] = [f"data.root={root / 'csv' / 'm.csv'}", "noise=symmetric:0.3"]
    args["imagefolder"] = [f"data.root={root / 'folder'}", "noise=symmetric:0.3"]
    write_clothing1m(root / "clothing")
    args["clothing1m"] = [f"data.root={root / 'clothing'}"]
    write_food101n(root / "food_n", root / "food")
    args["food101n"] = [f"data.root={root / 'food_n'}", f"data.food101_root={root / 'food'}"]
    write_cifar(root / "cifar", "cifar10", per_batch=20)
    args["cifar10"] = [f"data.root={root / 'cifar'}", "noise=symmetric:0.4"]
    names = {"csv": "abc", "imagefolder": "abc", "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                          "frog", "horse", "ship", "truck"]}
    for dataset, classes in names.items():
        args[dataset] += side_info(root / f"{dataset}.yaml", classes)  # reaches sinet only
    return args


def method_args(method, dataset_args):
    return [a for a in dataset_args if not a.startswith("sinet.") or method == "sinet"] + METHODS[method]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_combination_finishes_and_records(trees, tmp_path, dataset, setting, method):
    overrides = [*SMALL, f"setting={setting}", *method_args(method, trees[dataset])]
    if method == "lsw" and setting != "clean":
        with pytest.raises(ConfigError, match="lsw needs a clean set"):
            run(method, dataset, tmp_path, overrides)
        assert not (tmp_path / "metrics.json").exists()
        return
    m = run(method, dataset, tmp_path, overrides)
    assert json.loads((tmp_path / "metrics.json").read_text()) == m
    assert m["setting"] == setting and m["method"] == method and len(m["history"]) >= 1
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert list(samples["index"]) == list(range(m["num_train"]))
    assert samples["train_loss"].notna().all()
    if "path" in samples:  # the paths of the rows trained on (a clean hold-out is not among them)
        assert samples["path"].is_unique and all(str(p).endswith(".jpg") for p in samples["path"])
    if setting == "clean":
        assert m["data"]["clean"] > 0 and m["history"][-1]["stage"] == ("finetune" if method != "lsw" else "train")
    known = samples["true_label"].notna() if "true_label" in samples else None
    if method == "smp" and known is not None and known.any():
        # the record's label accuracy is that of the labels in samples.csv: the final model's
        right = samples.loc[known, "corrected_label"] == samples.loc[known, "true_label"]
        assert m["labels"]["corrected_accuracy"] == pytest.approx(right.mean())
    if method in ("sinet", "lsw"):
        assert np.isfinite(samples["weight"]).all()
