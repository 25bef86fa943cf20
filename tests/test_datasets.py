"""Real-dataset loaders read small trees written in the exact distributed formats."""

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures import (CLOTHING_NAMES, FOOD_CLASSES, write_cifar, write_cifar10, write_cifar10n, write_clothing1m,
                      write_food101n, write_jpeg, write_lines)
from noisybench import hookimpl
from noisybench.api import make_config, run
from noisybench.cli import main
from noisybench.datasets import build_dataset, labels_of
from noisybench.errors import ConfigError, DataError

SMALL = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=1", "batch_size=16",
         "data.num_workers=0"]


def splits_of(dataset, *overrides):
    return build_dataset(make_config("ce", dataset, overrides=[*SMALL, *overrides]))


# -- Clothing1M ---------------------------------------------------------------------------


@pytest.mark.parametrize("kv_prefix, list_prefix", [(True, False), (False, True)])
def test_clothing1m_counts_labels_and_true_label_overlap(tmp_path, kv_prefix, list_prefix):
    expected = write_clothing1m(tmp_path, kv_prefix=kv_prefix, list_prefix=list_prefix)
    splits = splits_of("clothing1m", f"data.root={tmp_path}")
    assert splits.class_names == CLOTHING_NAMES
    assert len(splits.train) == 56 and len(splits.val) == 28 and len(splits.test) == 14 and len(splits.clean) == 14
    assert np.array_equal(splits.train_labels, expected["noisy"])
    assert np.array_equal(splits.true_labels, expected["true"])  # -1 where only the noisy label exists
    assert np.array_equal(labels_of(splits.test), np.arange(14))
    image, label, index = splits.train[3]
    assert image.shape == (3, 16, 16) and label == expected["noisy"][3] and index == 3
    assert splits.noise.type == "real"


def test_clothing1m_settings(tmp_path):
    write_clothing1m(tmp_path)
    verify = splits_of("clothing1m", f"data.root={tmp_path}", "setting=verify")
    assert len(verify.trusted) == 28  # images with both labels, and they agree
    assert (verify.train_labels[verify.trusted] == verify.true_labels[verify.trusted]).all()


class TrustedProbe:
    seen = None

    @hookimpl
    def noisybench_setup(self, run):
        TrustedProbe.seen = run.trusted_indices()


def test_clothing1m_runs_in_each_setting(tmp_path):
    write_clothing1m(tmp_path / "data")
    root = f"data.root={tmp_path / 'data'}"
    m = run("ce", "clothing1m", tmp_path / "noisy", [*SMALL, root])
    assert m["labels"]["noisy_accuracy"] == pytest.approx(28 / 42)
    assert m["noise"] == {"type": "real", "rate": None, "realised_rate": pytest.approx(14 / 42)}  # the wrong labels known
    run("ce", "clothing1m", tmp_path / "verify", [*SMALL, root, "setting=verify"], plugins=[TrustedProbe()])
    assert len(TrustedProbe.seen) == 28
    m = run("ce", "clothing1m", tmp_path / "clean", [*SMALL, root, "setting=clean", "finetune.epochs=2"])
    assert [h["stage"] for h in m["history"]] == ["train", "finetune", "finetune"]
    assert m["history"][1]["lr"] == pytest.approx(0.0002)  # optimizer.lr / 10


def test_trusted_subset_is_refused_outside_verify(tmp_path):
    with pytest.raises(ConfigError, match="setting=verify"):
        run("ce", "digits", tmp_path, ["progress=false", "epochs=1"], plugins=[TrustedProbe()])


def test_clothing1m_missing_kv_file_names_it_and_the_layout(tmp_path):
    write_clothing1m(tmp_path, skip=("noisy_label_kv.txt", "clean_label_kv.txt"))
    with pytest.raises(DataError, match="missing in .*: noisy_label_kv.txt, clean_label_kv.txt") as err:
        splits_of("clothing1m", f"data.root={tmp_path}")
    assert "expected layout" in str(err.value)


def test_missing_root_fails_at_once(tmp_path):
    with pytest.raises(DataError, match="data.root=PATH"):
        splits_of("clothing1m")
    with pytest.raises(DataError, match="is not a folder"):
        splits_of("clothing1m", f"data.root={tmp_path / 'nowhere'}")


@pytest.mark.parametrize(
    "line, message",
    [("images/0/01/x.jpg 14", r"noisy_label_kv.txt:57: label 14 is out of range 0..13"),
     ("images/0/01/x.jpg five", r"noisy_label_kv.txt:57: label 'five' is not an integer"),
     ("images/0/01/x.jpg 3 extra", r"noisy_label_kv.txt:57: expected 'KEY LABEL'")],
)
def test_malformed_kv_line_names_file_and_line(tmp_path, line, message):
    write_clothing1m(tmp_path)
    kv = tmp_path / "noisy_label_kv.txt"
    kv.write_text(kv.read_text() + line + "\n")
    with pytest.raises(DataError, match=message):
        splits_of("clothing1m", f"data.root={tmp_path}")


def test_missing_images_are_listed(tmp_path):
    expected = write_clothing1m(tmp_path)
    for key in expected["lists"]["clean_test"][:2]:
        (tmp_path / "images" / key).unlink()
    with pytest.raises(DataError, match="clean_test split are missing") as err:
        splits_of("clothing1m", f"data.root={tmp_path}")
    assert expected["lists"]["clean_test"][0] in str(err.value)


def test_key_without_a_label_is_named(tmp_path):
    write_clothing1m(tmp_path)
    keys = tmp_path / "noisy_train_key_list.txt"
    keys.write_text(keys.read_text() + "9/99/unlabelled.jpg\n")
    with pytest.raises(DataError, match="1 keys of noisy_train_key_list.txt have no label.*unlabelled.jpg"):
        splits_of("clothing1m", f"data.root={tmp_path}")


def test_corrupt_image_is_counted_reported_and_blanked(tmp_path, capsys):
    write_clothing1m(tmp_path / "data", corrupt=True)
    m = run("ce", "clothing1m", tmp_path / "run", [*SMALL, f"data.root={tmp_path / 'data'}", "epochs=2", "progress=true"])
    assert m["data"]["corrupt_images"]["train"] == 1
    out = capsys.readouterr()
    assert (out.out + out.err).count("1 unreadable train images replaced") == 1  # reported once, not per epoch
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert samples["corrupt"].tolist() == [0, 1] + [0] * 54


def test_corrupt_image_policy_is_a_normalised_blank(tmp_path):
    write_clothing1m(tmp_path, corrupt=True)
    from noisybench.models import InputNormalize

    splits = splits_of("clothing1m", f"data.root={tmp_path}")
    image, label, index = splits.train_eval[1]
    image = InputNormalize(splits.normalization)(image[None])[0]  # as the model sees it
    assert torch.allclose(image, torch.zeros_like(image), atol=0.02)  # mean colour -> zeros
    assert (label, index) == (splits.train_labels[1], 1)


# -- Food-101N ----------------------------------------------------------------------------


def test_food101n_traps(tmp_path):
    expected = write_food101n(tmp_path / "n", tmp_path / "f")
    splits = splits_of("food101n", f"data.root={tmp_path / 'n'}", f"data.food101_root={tmp_path / 'f'}")
    assert splits.class_names == FOOD_CLASSES  # the header line of classes.txt is skipped
    assert len(splits.train) == expected["train"] and len(splits.val) == expected["val"]
    assert len(splits.test) == expected["test"]  # Food-101's test.txt, not verified_val.tsv
    assert len(splits.trusted) == expected["trusted"]  # '1' rows; the conflicting key is not among them
    flags = splits.is_noisy()
    assert (flags == 1).sum() == expected["known_noisy"]  # '0' rows are known noisy: '0' is not truthy
    assert (flags == 0).sum() == expected["trusted"]
    assert any("1 verified keys are filed under another class" in w for w in splits.warnings)
    assert len(splits.clean) == expected["trusted"]


def test_food101n_runs_and_scores_labels_on_verified_rows(tmp_path):
    write_food101n(tmp_path / "n", tmp_path / "f")
    roots = [f"data.root={tmp_path / 'n'}", f"data.food101_root={tmp_path / 'f'}"]
    m = run("ce", "food101n", tmp_path / "run", [*SMALL, *roots])
    assert m["labels"]["noisy_accuracy"] == pytest.approx(6 / 9)
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert samples["is_noisy"].sum() == 3 and samples["is_noisy"].isna().sum() == 15 - 9


def test_food101n_bad_verification_value(tmp_path):
    write_food101n(tmp_path / "n", tmp_path / "f")
    path = tmp_path / "n/meta/verified_val.tsv"
    path.write_text(path.read_text() + "apple_pie/0002abcdef.jpg\tyes\n")
    with pytest.raises(DataError, match=r"verified_val.tsv:5: verification label 'yes' is not 0 or 1"):
        splits_of("food101n", f"data.root={tmp_path / 'n'}", f"data.food101_root={tmp_path / 'f'}")


def test_food101n_needs_the_food101_root(tmp_path):
    write_food101n(tmp_path / "n", tmp_path / "f")
    with pytest.raises(DataError, match="data.food101_root"):
        splits_of("food101n", f"data.root={tmp_path / 'n'}")


# -- CIFAR --------------------------------------------------------------------------------


def test_cifar10_from_torchvision_files_with_synthetic_noise(tmp_path):
    clean = write_cifar10(tmp_path)
    splits = splits_of("cifar10", f"data.root={tmp_path}", "noise=asymmetric:0.4", "data.val_fraction=0.2")
    assert len(splits.train) == 80 and len(splits.val) == 20 and len(splits.test) == 40
    assert splits.class_names[0] == "airplane"
    changed = splits.train_labels != splits.true_labels
    assert changed.mean() == pytest.approx(0.4, abs=0.1)
    assert ((splits.true_labels[changed] + 1) % 10 == splits.train_labels[changed]).all()
    assert sorted(np.concatenate([splits.true_labels, labels_of(splits.val)])) == sorted(clean)


def test_cifar10n_human_labels(tmp_path):
    clean = write_cifar10(tmp_path)
    human = write_cifar10n(tmp_path / "CIFAR-10_human.pt", clean)
    splits = splits_of("cifar10", f"data.root={tmp_path}", "noise=human:worse", "data.val_fraction=0")
    assert np.array_equal(splits.train_labels, human["worse_label"])
    assert np.array_equal(splits.true_labels, clean)
    assert splits.noise.rate == pytest.approx(0.4) and splits.noise.label_set == "worse"
    m = run("ce", "cifar10", tmp_path / "run", [*SMALL, f"data.root={tmp_path}", "noise=human:worse"])
    assert m["noise"] == {"type": "human", "rate": pytest.approx(0.4), "label_set": "worse",
                          "realised_rate": pytest.approx(1 - m["labels"]["noisy_accuracy"])}  # over the training labels


def test_cifar10n_file_for_another_order_is_refused(tmp_path):
    clean = write_cifar10(tmp_path)
    write_cifar10n(tmp_path / "CIFAR-10_human.pt", np.roll(clean, 1))
    with pytest.raises(DataError, match="clean_label' does not match"):
        splits_of("cifar10", f"data.root={tmp_path}", "noise=human:aggre")


def test_cifar_missing_files_and_human_noise_elsewhere(tmp_path):
    with pytest.raises(DataError, match="data_batch_1.*data.download=true"):
        splits_of("cifar10", f"data.root={tmp_path}")
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="CIFAR-10_human.pt"):
        splits_of("cifar10", f"data.root={tmp_path}", "noise=human:worse")
    with pytest.raises(ConfigError, match="human labels exist for cifar10 and cifar100 only"):
        splits_of("digits", "noise=human:worse")


def test_mapped_noise_moves_the_papers_cifar_classes_and_is_refused_elsewhere(tmp_path):
    write_cifar(tmp_path / "10", "cifar10", per_batch=100)
    splits = splits_of("cifar10", f"data.root={tmp_path / '10'}", "noise=mapped:0.4", "data.val_fraction=0")
    names = splits.class_names
    true, noisy = splits.true_labels, splits.train_labels
    moves = {(names[a], names[b]) for a, b in zip(true, noisy) if a != b}
    assert moves == {("truck", "automobile"), ("bird", "airplane"), ("deer", "horse"), ("cat", "dog"), ("dog", "cat")}
    for c, name in enumerate(names):  # 50 images per class: 20 of each mapped class move, the rest none
        assert int(np.sum(noisy[true == c] != c)) == (20 if name in ("truck", "bird", "deer", "cat", "dog") else 0)
    write_cifar(tmp_path / "100", "cifar100", per_batch=500)
    splits = splits_of("cifar100", f"data.root={tmp_path / '100'}", "noise=mapped:0.2", "data.val_fraction=0")
    true, noisy = splits.true_labels, splits.train_labels
    changed = noisy != true
    assert np.array_equal(noisy[changed], 5 * (true[changed] // 5) + (true[changed] + 1) % 5)  # 4 → 0, 7 → 8, 99 → 95
    assert {int(np.sum(changed & (true == c))) for c in range(100)} == {5}  # 25 per class, round(0.2·25)
    with pytest.raises(ConfigError, match="mapped:R is defined for cifar10 and cifar100 only, not 'digits'"):
        splits_of("digits", "noise=mapped:0.4")


# -- the user's own data ------------------------------------------------------------------


def test_csv_manifest_with_names_true_labels_and_splits(tmp_path):
    rows = ["path,label,true_label,split"]
    for i in range(12):
        name = ["cat", "dog", "emu"][i % 3]
        true = name if i != 4 else "cat"
        split = "test" if i >= 9 else "train"
        write_jpeg(tmp_path / "img" / f"{i}.jpg", i % 3)
        rows.append(f"img/{i}.jpg,{name},{true},{split}")
    write_lines(tmp_path / "data.csv", rows)
    splits = splits_of("csv", f"data.root={tmp_path / 'data.csv'}", "data.val_fraction=0")
    assert splits.class_names == ["cat", "dog", "emu"]
    assert len(splits.train) == 9 and len(splits.test) == 3 and splits.val is None
    assert splits.train_labels.tolist() == [0, 1, 2] * 3
    assert splits.true_labels[4] == 0 and splits.is_noisy().sum() == 1


def test_csv_manifest_with_ids_carves_splits_and_takes_synthetic_noise(tmp_path):
    rows = ["path,label"]
    for i in range(40):
        write_jpeg(tmp_path / f"{i}.png", i % 4)
        rows.append(f"{i}.png,{i % 4}")
    write_lines(tmp_path / "m.csv", rows)
    splits = splits_of("csv", f"data.root={tmp_path / 'm.csv'}", "noise=symmetric:0.5", "data.test_fraction=0.2",
                       "data.val_fraction=0.25")
    assert splits.class_names == ["0", "1", "2", "3"]
    assert len(splits.test) == 8 and len(splits.val) == 8 and len(splits.train) == 24
    assert (splits.train_labels != splits.true_labels).sum() == 12


def test_csv_errors_name_file_and_line(tmp_path):
    write_lines(tmp_path / "m.csv", ["path,label,split", "a.jpg,cat,train", "b.jpg,dog,holdout"])
    with pytest.raises(DataError, match=r"m.csv:3: split 'holdout'"):
        splits_of("csv", f"data.root={tmp_path / 'm.csv'}")
    write_lines(tmp_path / "n.csv", ["file,label", "a.jpg,cat"])
    with pytest.raises(DataError, match="missing column"):
        splits_of("csv", f"data.root={tmp_path / 'n.csv'}")


def test_imagefolder_with_split_folders(tmp_path):
    for split, count in (("train", 4), ("test", 2)):
        for c, name in enumerate(["ant", "bee"]):
            for i in range(count):
                write_jpeg(tmp_path / split / name / f"{i}.jpg", c)
    splits = splits_of("imagefolder", f"data.root={tmp_path}", "data.val_fraction=0")
    assert splits.class_names == ["ant", "bee"]
    assert len(splits.train) == 8 and len(splits.test) == 4
    m = run("ce", "imagefolder", tmp_path / "run", [*SMALL, f"data.root={tmp_path}", "noise=symmetric:0.25"])
    assert m["labels"]["noisy_accuracy"] == pytest.approx(0.75, abs=0.13)


# -- settings with synthetic noise, decoders, balanced subsets, data check ----------------


def test_synthetic_noise_settings_hold_out_clean_and_simulate_verification(tmp_path):
    clean = splits_of("digits", "noise=symmetric:0.4", "setting=clean", "data.clean_fraction=0.1")
    assert len(clean.clean) == 108 and len(clean.train) == 970
    assert (labels_of(clean.clean) >= 0).all()
    verify = splits_of("digits", "noise=symmetric:0.4", "setting=verify")
    assert len(verify.train) == 1078
    assert 50 < len(verify.trusted) < 80  # ~60% of 10% are right
    assert (verify.train_labels[verify.trusted] == verify.true_labels[verify.trusted]).all()


def test_decoders_agree(tmp_path):
    from noisybench.datasets.images import ImageFiles, paper_transforms

    write_jpeg(tmp_path / "a.jpg", 3, size=(300, 260))
    tf = paper_transforms(False)
    pil = ImageFiles([str(tmp_path / "a.jpg")], np.zeros(1), tf, "pil")[0][0]
    tv = ImageFiles([str(tmp_path / "a.jpg")], np.zeros(1), tf, "torchvision")[0][0]
    assert pil.shape == tv.shape == (3, 224, 224) and pil.dtype == tv.dtype == torch.uint8
    assert (pil.float() - tv.float()).abs().mean() / 255 < 0.05


def test_balanced_epoch_subset(tmp_path):
    from noisybench.loaders import BalancedEpochSampler

    labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
    sampler = BalancedEpochSampler(labels, total=30, seed=1)
    first = [i for _, i in sampler]  # (stream, index): the epoch's augmentation key and the sample
    assert np.bincount(labels[first]).tolist() == [10, 10, 5]
    assert list(sampler) == [(key, i) for key, i in sampler] and [i for _, i in sampler] == first  # same draw
    sampler.set_epoch(1)
    assert [i for _, i in sampler] != first and len({key for key, _ in sampler}) == 1
    m = run("ce", "digits", tmp_path, ["progress=false", "epochs=2", "data.epoch_subset=200"])
    assert [h["samples_trained"] for h in m["history"]] == [200, 200]


def test_data_check_reports_counts_accuracy_and_warnings(tmp_path, capsys):
    write_clothing1m(tmp_path, swap_val_test=True)
    code = main(["data", "check", "--dataset", "clothing1m", f"data.root={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 1  # the warning counts as a problem
    assert "noisy-label accuracy: 0.6667 over 42" in out
    assert "may have them swapped" in out
    table_line = next(line for line in out.splitlines() if line.startswith("total"))
    assert table_line.split() == ["total", "56", "14", "28", "14"]


def test_data_check_finds_corrupt_images_when_decoding(tmp_path, capsys):
    write_clothing1m(tmp_path, corrupt=True)
    assert main(["data", "check", "--dataset", "clothing1m", f"data.root={tmp_path}"]) == 0
    assert main(["data", "check", "--dataset", "clothing1m", f"data.root={tmp_path}", "--decode"]) == 1
    assert "train: 1 images missing or unreadable" in capsys.readouterr().out


def test_data_check_missing_file_exits_2(tmp_path, capsys):
    write_clothing1m(tmp_path, skip=("clean_label_kv.txt",))
    assert main(["data", "check", "--dataset", "clothing1m", f"data.root={tmp_path}"]) == 2
    assert "clean_label_kv.txt" in capsys.readouterr().err


def test_paper_configs_resolve():
    from pathlib import Path

    folder = Path(__file__).parents[1] / "benchmarks" / "configs"
    configs = sorted(p for p in folder.glob("*.yaml") if p.stem.split("_")[1] in ("noisy", "verify", "clean"))
    assert len(configs) == 6  # the SMP paper's six settings
    for path in configs:
        config = make_config("ce", config_file=path)
        assert config["model"]["name"] == "resnet50" and config["batch_size"] == 128
        assert config["dataset"] in ("clothing1m", "food101n")
        assert config["epochs"] == {"clothing1m": 15, "food101n": 30}[config["dataset"]]
    dividemix = make_config("dividemix", config_file=folder / "clothing1m_dividemix.yaml")
    assert dividemix["batch_size"] == 32 and dividemix["epochs"] == 81 and dividemix["data"]["epoch_subset"] == 32000
    assert dividemix["dividemix"] == {"warm_up": 1, "p_threshold": 0.5, "temperature": 0.5, "alpha": 0.5,
                                      "lambda_u": 0.0, "confidence_penalty": True, "mix": "labelled"}
    assert dividemix["eval"]["each_network"] is True  # their report: each network's own best epoch
    for name, noise, epochs, milestones, elr in (("cifar10_elr", "uniform:0.4", 150, None, (0.7, 3.0)),
                                                  ("cifar10_asym_elr", "mapped:0.4", 120, [40, 80], (0.9, 1.0)),
                                                  ("cifar100_elr", "uniform:0.4", 150, [80, 120], (0.9, 7.0))):
        config = make_config("elr", config_file=folder / f"{name}.yaml")
        assert (config["noise"], config["epochs"], config["lr_schedule"]["milestones"]) == (noise, epochs, milestones)
        assert (config["data"]["val_fraction"], config["data"]["val_noise"]) == (0.1, True)  # 45,000 / 5,000 noisy
        assert config["model"]["name"] == "resnet34_cifar" and config["batch_size"] == 128
        assert config["optimizer"]["lr"] == 0.02 and config["optimizer"]["weight_decay"] == 1e-3
        assert (config["elr"]["beta"], config["elr"]["lambda"]) == elr
    coteaching = make_config("coteaching", config_file=folder / "cifar10_coteaching.yaml")
    assert coteaching["model"]["name"] == "cnn9" and coteaching["optimizer"]["name"] == "adamw"
    assert coteaching["noise"] == "asymmetric:0.45" and coteaching["epochs"] == 199  # main.py's range(1, 200)
    assert coteaching["coteaching"] == {"forget_rate": 0.45, "num_gradual": 10,  # auto: the noise rate
                                        "schedule": "code", "evaluate": "main"}


def write_any(name, root):
    """A fixture tree for dataset ``name``; returns the key=value arguments that point at it."""
    if name == "clothing1m":
        write_clothing1m(root)
    elif name == "food101n":
        write_food101n(root / "n", root / "f")
        return [f"data.root={root / 'n'}", f"data.food101_root={root / 'f'}"]
    elif name in ("cifar10", "cifar100"):
        write_cifar(root, name, per_batch=40)
    elif name == "csv":
        rows = ["path,label"] + [f"{i}.jpg,{'ab'[i % 2]}" for i in range(20)]
        for i in range(20):
            write_jpeg(root / f"{i}.jpg", i % 2)
        write_lines(root / "m.csv", rows)
        return [f"data.root={root / 'm.csv'}"]
    elif name == "imagefolder":
        for i in range(20):
            write_jpeg(root / "ab"[i % 2] / f"{i}.jpg", i % 2)
    return [f"data.root={root}"]


@pytest.mark.parametrize("name", ["clothing1m", "food101n", "cifar10", "cifar100", "csv", "imagefolder"])
def test_every_dataset_loads_through_run_and_data_check(name, tmp_path, capsys):
    args = write_any(name, tmp_path / "data")
    code = main(["data", "check", "--dataset", name, *args])
    out = capsys.readouterr().out
    assert code == (1 if name == "food101n" else 0), out  # food101n's fixture has a key conflict
    assert out.startswith(f"dataset {name}:") and "total" in out
    m = run("ce", name, tmp_path / "run", [*SMALL, *args])
    assert m["dataset"] == name and 0.0 <= m["test"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "metrics.json").exists()


def test_instance_noise_on_digits_through_the_dataset():
    splits = splits_of("digits", "noise=instance:0.3", "seed=4")
    flipped = splits.train_labels != splits.true_labels
    assert flipped.sum() == round(0.3 * 1078) and splits.noise.type == "instance"
    again = splits_of("digits", "noise=instance:0.3", "seed=4")
    assert np.array_equal(again.train_labels, splits.train_labels)


def crop_positions(outputs, image, padding):
    """(top, left, flipped) of each output: where in the zero-padded ``image`` it was cut."""
    padded = torch.nn.functional.pad(image, [padding] * 4)
    h, w = image.shape[-2:]
    found = []
    for out in outputs:
        hits = [(t, l, f) for t in range(2 * padding + 1) for l in range(2 * padding + 1) for f in (False, True)
                if torch.equal(out, (padded[..., t:t + h, l:l + w].flip(-1) if f else padded[..., t:t + h, l:l + w]))]
        assert len(hits) == 1, "not a crop of the padded image"
        found.append(hits[0])
    return found


def test_batched_augmentation_matches_torchvision_in_distribution():
    """The batched crop and flip cut the same windows as torchvision's per-sample RandomCrop and
    RandomHorizontalFlip, with the same (uniform) distribution of offsets and flips."""
    from torchvision.transforms import v2

    from noisybench.datasets.draws import drawing, stream
    from noisybench.datasets.memory import BatchAugment

    torch.manual_seed(0)
    image = torch.arange(1, 3 * 6 * 6 + 1, dtype=torch.uint8).reshape(3, 6, 6)  # every pixel distinct, none 0
    draws = 2700
    augment = BatchAugment(padding=2, flip=True)
    with drawing(stream(1, 0, 3, 0)):  # keyed by sample, as a loader fetches
        keyed = augment(image.expand(draws, -1, -1, -1).clone(), range(draws))
    batched = augment(image.expand(draws, -1, -1, -1).clone(), range(draws))  # torch's generator
    per_sample = v2.Compose([v2.RandomCrop(6, padding=2), v2.RandomHorizontalFlip()])
    reference = [per_sample(image) for _ in range(draws)]
    counts = []
    for outputs in (batched, reference, keyed):
        found = crop_positions(outputs, image, 2)
        tally = np.zeros((5, 5, 2))
        for t, l, f in found:
            tally[t, l, int(f)] += 1
        counts.append(tally / draws)
    expected = 1 / 50  # 25 offsets x 2 flips
    for frequencies in counts:
        assert np.abs(frequencies - expected).max() < 0.012  # ~4.5 sd of a binomial(2700, 1/50)
        assert abs(frequencies[..., 1].sum() - 0.5) < 0.04
    assert 0.5 * np.abs(counts[0] - counts[1]).sum() < 0.12  # total variation between the two
    assert 0.5 * np.abs(counts[2] - counts[1]).sum() < 0.12


def test_memory_images_normalise_like_torchvision():
    """In-memory images stay uint8 through the loader; the model's InputNormalize gives what
    torchvision's ToDtype + Normalize gave on the host."""
    from torchvision.transforms import v2

    from noisybench.datasets.memory import MemoryImages
    from noisybench.models import InputNormalize

    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    data = MemoryImages(images, np.arange(5), mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    reference = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])])
    batch = data.__getitems__([3, 1])
    assert [(int(label), i) for _, label, i in batch] == [(3, 3), (1, 1)]
    assert batch[0][0].dtype == torch.uint8
    normalize = InputNormalize(data.normalization)
    assert torch.equal(normalize(batch[0][0][None])[0], reference(images[3]))
    assert torch.equal(normalize(data[1][0][None])[0], reference(images[1]))


def test_noisy_in_memory_training_data_is_augmented_a_batch_at_a_time():
    """Synthetic noise relabels the training set; the relabelled set still hands whole
    batches to the in-memory images, so each batch is cropped and flipped in one call."""
    from torch.utils.data import DataLoader

    splits = splits_of("digits", "noise=symmetric:0.4")
    base = splits.train.base
    calls = []
    augment = base.augment
    base.augment = lambda images, indices: calls.append(len(images)) or augment(images, indices)
    seen = []
    for images, labels, indices in DataLoader(splits.train, batch_size=100, shuffle=False):
        assert images.shape[1:] == (1, 8, 8)
        assert torch.equal(labels, torch.as_tensor(splits.train_labels)[indices])  # the noisy labels
        seen.extend(indices.tolist())
    assert calls == [100] * 10 + [len(splits.train_labels) - 1000]
    assert seen == list(range(len(splits.train_labels)))
    assert (splits.train_labels != splits.true_labels).any()


def test_uint8_pipeline_and_device_normalisation_equal_the_float_pipeline(tmp_path):
    """The photo pipeline now ends in uint8 and the model normalises: the same crops and flips
    under the same seed, and the same float tensors as the former host-side pipeline."""
    from torchvision.transforms import v2

    from noisybench.datasets.images import IMAGENET_MEAN, IMAGENET_STD, ImageFiles, paper_transforms
    from noisybench.models import InputNormalize

    for i in range(4):
        write_jpeg(tmp_path / f"{i}.jpg", i, size=(300 + 20 * i, 260))
    paths = [str(tmp_path / f"{i}.jpg") for i in range(4)]
    former = {train: v2.Compose([v2.ToImage(), v2.Resize(256, antialias=True),
                                 *([v2.RandomCrop(224), v2.RandomHorizontalFlip()] if train else [v2.CenterCrop(224)]),
                                 v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
              for train in (True, False)}
    normalize = InputNormalize((IMAGENET_MEAN, IMAGENET_STD))
    for train in (True, False):
        new = ImageFiles(paths, np.zeros(4), paper_transforms(train))
        old = ImageFiles(paths, np.zeros(4), former[train])
        for seed in range(3):
            torch.manual_seed(seed)
            fresh = torch.stack([new[i][0] for i in range(4)])
            torch.manual_seed(seed)
            reference = torch.stack([old[i][0] for i in range(4)])
            assert fresh.dtype == torch.uint8
            assert torch.allclose(normalize(fresh), reference, atol=1e-6)
            if train and seed:  # the crops are random: other seeds give other tensors
                assert not torch.equal(fresh, first)
            first = fresh




def test_scaled_decoding_gives_the_size_the_pipeline_needs(tmp_path):
    """A JPEG twice the target or more is DCT-scaled to the smallest 1/2^k with both sides at
    least the target; a smaller one is torchvision's full decode, pixel for pixel."""
    from noisybench.datasets.images import ImageFiles, decode, decode_torchvision

    sizes = {(800, 600): (300, 400), (2100, 1600): (400, 525), (500, 500): (500, 500), (511, 700): (700, 511)}
    for (width, height), expected in sizes.items():
        path = tmp_path / f"{width}x{height}.jpg"
        write_jpeg(path, 1, size=(width, height))
        data = path.read_bytes()
        image = decode(data, "scaled", 256, 10**8)
        assert tuple(image.shape) == (3, *expected)
        if expected == (height, width):
            assert torch.equal(image, decode_torchvision(data))
        else:  # about the full decode, resized
            full = torch.nn.functional.interpolate(decode_torchvision(data)[None].float(), size=expected,
                                                   mode="bilinear", antialias=True)[0]
            assert (image.float() - full).abs().mean() < 6
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((tmp_path / "800x600.jpg").read_bytes()[:3000])
    files = ImageFiles([str(truncated)], np.zeros(1), transform=lambda x: x, decoder="scaled", draft_size=256)
    files.load(0)
    assert bool(files.corrupt[0])  # strict: a flaw is not decoded into grey rows
