"""Results that no loader setting moves: each sample's random crop and flip are drawn from
(seed, epoch, view, index) (datasets/draws.py), not from the worker or process that loads it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from conftest import comparable
from fixtures import write_jpeg

from noisybench.api import make_config, run
from noisybench.datasets import build_dataset
from noisybench.loaders import loader_options, train_loader


def imagefolder(root, per_class=12):
    for label, name in enumerate(("cat", "dog", "emu")):
        for i in range(per_class):
            write_jpeg(root / name / f"{name}{i}.jpg", label)


def small(root, *overrides):
    return ["progress=false", "model.name=small_cnn", "data.image_size=16", "batch_size=8", f"data.root={root}",
            "noise=symmetric:0.25", *overrides]


def test_identical_samples_and_record_for_0_1_and_2_workers(tmp_path):
    """An image folder under the small-image pipeline (resize, pad-2 random crop, flip): the
    record and samples.csv of 0, 1 and 2 loader workers are the same, number for number."""
    imagefolder(tmp_path / "data")
    records, samples = [], []
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}"
        records.append(comparable(run("ce", "imagefolder", out, small(tmp_path / "data", "epochs=2",
                                                                       f"data.num_workers={workers}"))))
        samples.append(pd.read_csv(out / "samples.csv"))
    assert records[0] == records[1] == records[2]
    pd.testing.assert_frame_equal(samples[0], samples[1])
    pd.testing.assert_frame_equal(samples[0], samples[2])
    assert not np.isnan(samples[0]["train_loss"]).any()


def loaded_images(config, splits, epoch, workers=0, processes=1, process_index=0):
    """{index: augmented image} of one process's share of an epoch of the training loader."""
    from accelerate.data_loader import prepare_data_loader

    options = {"num_workers": workers, **({"persistent_workers": True} if workers else {})}
    loader = train_loader(config, splits.train, splits.train_labels, options)
    if processes > 1:  # the batches process ``process_index`` of ``processes`` is given, as Accelerate shards them
        loader = prepare_data_loader(loader, num_processes=processes, process_index=process_index,
                                     put_on_device=False, use_seedable_sampler=True, data_seed=config["seed"])
    loader.set_epoch(epoch) if hasattr(loader, "set_epoch") else loader.sampler.set_epoch(epoch)
    return {int(i): image for images, _, indices in loader for image, i in zip(images, indices)}


def test_a_samples_augmentation_is_the_same_in_any_process_and_worker():
    """digits (pad-1 random crop): each sample gets the same crop in one process without
    workers, with two workers, and in whichever of two processes Accelerate gives it to;
    another epoch draws another crop."""
    config = make_config("ce", "digits", None, ["batch_size=32"])
    splits = build_dataset(config)
    alone = loaded_images(config, splits, 3)
    assert sorted(alone) == list(range(len(splits.train)))
    with_workers = loaded_images(config, splits, 3, workers=2)
    shards = [loaded_images(config, splits, 3, processes=2, process_index=k) for k in (0, 1)]
    assert set(shards[0]) | set(shards[1]) == set(alone)  # (the last batch is padded with samples from the start)
    for i, image in alone.items():
        assert torch.equal(with_workers[i], image)
        assert all(torch.equal(shard[i], image) for shard in shards if i in shard)
    other_epoch = loaded_images(config, splits, 4)
    assert sum(not torch.equal(other_epoch[i], alone[i]) for i in alone) > len(alone) / 2
