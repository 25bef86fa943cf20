"""`noisybench data prepare` and `data.prepared`: the same data as the raw files, faster to read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess
from fixtures import write_clothing1m, write_food101n, write_jpeg

from noisybench.api import make_config, run
from noisybench.datasets import build_dataset, image_paths, labels_of
from noisybench.errors import ConfigError, DataError
from noisybench.prepare import prepare

SMALL = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=2", "batch_size=16",
         "data.num_workers=0"]


def raw_options(dataset: str, root: Path) -> list[str]:
    if dataset == "clothing1m":
        write_clothing1m(root / "raw", corrupt=True)
        return [f"data.root={root / 'raw'}"]
    write_food101n(root / "raw", root / "food101")
    return [f"data.root={root / 'raw'}", f"data.food101_root={root / 'food101'}"]


def prepared_copy(dataset: str, root: Path, *extra: str, **kwargs) -> tuple[list[str], Path]:
    """(the raw data's options, a prepared copy) of a fixture; images under 256 pixels keep their bytes."""
    options = raw_options(dataset, root)
    folder = root / "prepared"
    prepare(make_config("ce", dataset, overrides=[*options, "progress=false", *extra]), folder, workers=1, **kwargs)
    return options, folder


@pytest.mark.parametrize("dataset", ["clothing1m", "food101n"])
def test_prepared_splits_equal_the_raw_ones(tmp_path, dataset):
    options, folder = prepared_copy(dataset, tmp_path, shard_size=10)
    for setting in ("noisy", "verify", "clean"):
        raw = build_dataset(make_config("ce", dataset, overrides=[*options, f"setting={setting}"]))
        fast = build_dataset(make_config("ce", dataset, overrides=[f"data.prepared={folder}", f"setting={setting}"]))
        for field in ("train_labels", "true_labels", "noise_flags", "trusted"):
            a, b = getattr(raw, field), getattr(fast, field)
            assert (a is None and b is None) or np.array_equal(a, b), field
        assert raw.class_names == fast.class_names and raw.warnings == fast.warnings
        assert raw.normalization == fast.normalization
        for name in ("train", "train_eval", "val", "test", "clean"):
            a, b = getattr(raw, name), getattr(fast, name)
            assert (a is None) == (b is None)
            if a is None:
                continue
            assert np.array_equal(labels_of(a), labels_of(b)) and list(image_paths(a)) == list(image_paths(b))
            for i in range(len(a)):  # small images keep their bytes: the same tensors, label and index
                (x, y, k), (u, v, j) = a[i], b[i]
                if name in ("train", "clean"):
                    continue  # random crops
                assert torch.equal(x, u) and int(y) == int(v) and k == j == i
        assert raw.identity != fast.identity  # another copy of the pixels: another experiment


@pytest.mark.parametrize("dataset", ["clothing1m", "food101n"])
def test_a_run_on_prepared_data_records_what_the_raw_run_records(tmp_path, dataset):
    options, folder = prepared_copy(dataset, tmp_path)
    raw = run("ce", dataset, tmp_path / "raw_run", [*SMALL, *options])
    fast = run("ce", dataset, tmp_path / "fast_run", [*SMALL, f"data.prepared={folder}"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "raw_run" / "samples.csv"),
                                  pd.read_csv(tmp_path / "fast_run" / "samples.csv"))
    assert raw["test"] == fast["test"] and raw["data"]["corrupt_images"] == fast["data"]["corrupt_images"]
    assert raw["labels"] == fast["labels"] and raw["detection"] == fast["detection"]
    if dataset == "clothing1m":
        assert fast["data"]["corrupt_images"] == {"train": 1, "val": 0, "test": 0, "clean": 0}
    assert raw["fingerprint"] != fast["fingerprint"]


@pytest.mark.parametrize("dataset", ["clothing1m", "food101n"])
def test_prepared_data_under_two_processes_records_what_raw_files_do(tmp_path, dataset):
    options, folder = prepared_copy(dataset, tmp_path)
    two = [*SMALL, "batch_size=8", "setting=verify"]
    outputs = {}
    for name, data in (("raw", options), ("prepared", [f"data.prepared={folder}"])):
        outputs[name] = tmp_path / f"{name}_run"  # beside the data, never in its folder
        proc = noisybench_subprocess("run", "--method", "smp", "--dataset", dataset, "--output", str(outputs[name]),
                                     *two, *data, "smp.start_epoch=1", processes=2)
        assert proc.returncode == 0, proc.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(outputs["raw"] / "samples.csv"),
                                  pd.read_csv(outputs["prepared"] / "samples.csv"))
    records = [json.loads((outputs[name] / "metrics.json").read_text()) for name in outputs]
    assert records[0]["test"] == records[1]["test"] and records[0]["labels"] == records[1]["labels"]


def test_large_images_are_stored_at_the_pipeline_short_edge(tmp_path):
    from noisybench.datasets.images import decode_torchvision
    from noisybench.datasets.prepared import PreparedImages

    options = raw_options("clothing1m", tmp_path)
    big = Path(image_paths(build_dataset(make_config("ce", "clothing1m", overrides=options)).train)[0])
    write_jpeg(big, 0, size=(800, 600))
    prepared = tmp_path / "prepared"
    prepare(make_config("ce", "clothing1m", overrides=[*options, "progress=false"]), prepared, workers=1)
    splits = build_dataset(make_config("ce", "clothing1m", overrides=[f"data.prepared={prepared}"]))
    files = splits.train_eval
    assert isinstance(files, PreparedImages)
    at = list(files.paths).index(str(big))
    stored = decode_torchvision(files.read(at))
    assert tuple(stored.shape) == (3, 256, 341)  # short edge 256, aspect kept
    raw = build_dataset(make_config("ce", "clothing1m", overrides=options))
    a, b = raw.train_eval[at][0].float(), files[at][0].float()
    assert a.shape == b.shape == (3, 224, 224) and (a - b).abs().mean() < 3  # JPEG quality 95 of the same resize


def test_an_interrupted_preparation_resumes_to_the_same_shards(tmp_path, monkeypatch):
    import noisybench.prepare as writer

    options = raw_options("food101n", tmp_path)
    config = make_config("ce", "food101n", overrides=[*options, "progress=false"])
    prepare(config, tmp_path / "straight", workers=2, shard_size=8)  # a pool; resumed below in-process: the same
    original, written = writer.write_shard, []

    def crash_after_two(*args):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")
        written.append(args[0])
        original(*args)

    monkeypatch.setattr(writer, "write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare(config, tmp_path / "resumed", workers=1, shard_size=8)
    with pytest.raises(DataError, match="interrupted"):
        build_dataset(make_config("ce", "food101n", overrides=[f"data.prepared={tmp_path / 'resumed'}"]))
    monkeypatch.setattr(writer, "write_shard", original)
    prepare(config, tmp_path / "resumed", workers=1, shard_size=8)
    straight = sorted(p.relative_to(tmp_path / "straight") for p in (tmp_path / "straight").rglob("*"))
    assert straight == sorted(p.relative_to(tmp_path / "resumed") for p in (tmp_path / "resumed").rglob("*"))
    assert any(path.suffix == ".tar" for path in straight)
    for path in straight:
        if (tmp_path / "straight" / path).is_file():
            assert (tmp_path / "straight" / path).read_bytes() == (tmp_path / "resumed" / path).read_bytes()
    with pytest.raises(ConfigError, match="another preparation"):
        prepare(config, tmp_path / "resumed", workers=1, shard_size=4)


def test_prepared_data_refuses_what_it_cannot_give(tmp_path):
    options, folder = prepared_copy("clothing1m", tmp_path, "data.image_size=32")
    with pytest.raises(DataError, match="short edge of 256"):
        build_dataset(make_config("ce", "clothing1m", overrides=[f"data.prepared={folder}"]))
    with pytest.raises(DataError, match="holds dataset 'clothing1m'"):
        build_dataset(make_config("ce", "food101n", overrides=[f"data.prepared={folder}"]))
    with pytest.raises(DataError, match="no manifest.json"):
        build_dataset(make_config("ce", "clothing1m", overrides=[f"data.prepared={tmp_path}"]))
    with pytest.raises(ConfigError, match="held in memory"):
        prepare(make_config("ce", "digits"), tmp_path / "digits")
    (folder / "train" / "shard-000000.tar").unlink()
    with pytest.raises(DataError, match="shard-000000.tar or its index is missing"):  # before anything runs
        build_dataset(make_config("ce", "clothing1m", overrides=[f"data.prepared={folder}", "data.image_size=32"]))


def test_data_prepare_check_and_bench_commands(tmp_path):
    options = raw_options("clothing1m", tmp_path)
    folder = tmp_path / "prepared"
    proc = noisybench_subprocess("data", "prepare", "--dataset", "clothing1m", "--output", str(folder), *options,
                                 "progress=false", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"prepared clothing1m in {folder}: train 56, val 28, test 14, clean 14" in proc.stdout
    assert "unreadable images stored empty (the run replaces them): train 1" in proc.stdout
    check = noisybench_subprocess("data", "check", "--dataset", "clothing1m", f"data.prepared={folder}", "--decode")
    assert check.returncode == 1 and "train: 1 images missing or unreadable" in check.stdout  # the corrupt one
    assert "val: all images present and readable" in check.stdout
    bench = noisybench_subprocess("data", "bench", "--dataset", "clothing1m", f"data.prepared={folder}",
                                  "--batches", "2", "batch_size=8", "data.num_workers=1")
    assert bench.returncode == 0, bench.stderr
    assert "images/s per worker" in bench.stdout and "training loader (1 workers" in bench.stdout
