"""ANIMAL-10N, mini-WebVision (+ ILSVRC12 val), Red Mini-ImageNet and torchvision's MNIST-style
folders, read from small trees written in their exact layouts with their traps."""

import json

import numpy as np
import pytest

from fixtures import write_jpeg
from noisybench.api import make_config, run
from noisybench.cli import main
from noisybench.datasets import UNKNOWN, build_dataset, image_paths, labels_of
from noisybench.errors import ConfigError, DataError
from real_noise_fixtures import (SYNSETS, write_animal10n, write_mnist_folder,
                                 write_redimagenet, write_webvision)

SMALL = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=1", "batch_size=16",
         "data.num_workers=0"]


def splits_of(dataset, *overrides):
    return build_dataset(make_config("ce", dataset, overrides=[*SMALL, *overrides]))


# -- ANIMAL-10N ----------------------------------------------------------------------------


def test_animal10n_reads_labels_from_names_in_name_order_and_skips_hidden_files(tmp_path):
    expected = write_animal10n(tmp_path)
    splits = splits_of("animal10n", f"data.root={tmp_path}")
    assert splits.class_names[:4] == ["cat", "lynx", "wolf", "coyote"] and splits.num_classes == 10
    names, labels = expected["training"]
    assert len(splits.train) == 20 and len(splits.test) == 10 and splits.val is None
    assert [p.rsplit("/", 1)[1] for p in image_paths(splits.train)] == names  # sorted, no ._ or .DS_Store
    assert np.array_equal(splits.train_labels, labels)
    assert np.array_equal(labels_of(splits.test), expected["testing"][1])
    assert splits.true_labels is None and splits.is_noisy() is None  # no truth published: metrics null
    assert splits.noise.type == "real"
    assert any("training/ has 20 images, the dataset 50,000" in w for w in splits.warnings)


def test_animal10n_refuses_a_missing_folder_and_a_bad_name(tmp_path):
    write_animal10n(tmp_path)
    (tmp_path / "testing").rename(tmp_path / "elsewhere")
    (tmp_path / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(DataError, match=r"missing in .*: testing/ \(this looks like the binary version"):
        splits_of("animal10n", f"data.root={tmp_path}")
    (tmp_path / "elsewhere").rename(tmp_path / "testing")
    write_jpeg(tmp_path / "training" / "cat_00001.jpg", 0, size=(16, 16))
    with pytest.raises(DataError, match=r"cat_00001.jpg: expected a name '<label>_<id>.jpg'"):
        splits_of("animal10n", f"data.root={tmp_path}")


# -- mini-WebVision and ILSVRC12 val -------------------------------------------------------


def test_webvision_first_classes_two_test_sets_and_distinct_names(tmp_path):
    write_webvision(tmp_path / "wv", tmp_path / "imagenet")
    splits = splits_of("webvision", f"data.root={tmp_path / 'wv'}", f"data.imagenet_root={tmp_path / 'imagenet'}",
                       "data.webvision_classes=2")
    assert splits.class_names == [f"crane ({SYNSETS[0]})", "concept1, synonym"]  # 'crane' is class 517 too
    assert len(splits.train) == 6 and np.array_equal(splits.train_labels, [0, 0, 0, 1, 1, 1])  # class 2 dropped
    assert image_paths(splits.train)[3].endswith("google/q0002/000000.jpg")
    assert len(splits.test) == 4 and image_paths(splits.test)[0].endswith("val_images_256/val000001.jpg")
    ilsvrc = splits.extra_tests["ilsvrc12_val"]
    assert np.array_equal(labels_of(ilsvrc), [0, 0, 1, 1])  # by WNID folder; the hidden file is skipped
    assert image_paths(ilsvrc)[2].endswith(f"val/{SYNSETS[1]}/ILSVRC2012_val_00000011.JPEG")
    assert splits.val is None and splits.true_labels is None


def test_webvision_reads_dividemix_folders_and_refuses_a_flat_val_and_a_missing_list(tmp_path):
    write_webvision(tmp_path / "wv", tmp_path / "by_index", imagenet_layout="index")
    splits = splits_of("webvision", f"data.root={tmp_path / 'wv'}", f"data.imagenet_root={tmp_path / 'by_index'}",
                       "data.webvision_classes=3")
    assert np.array_equal(labels_of(splits.extra_tests["ilsvrc12_val"]), [0, 0, 1, 1, 2, 2])
    write_webvision(tmp_path / "wv2", tmp_path / "flat", imagenet_layout="flat")
    with pytest.raises(DataError, match=r"no ILSVRC12 val folder for 2 classes .*holds the images flat"):
        splits_of("webvision", f"data.root={tmp_path / 'wv2'}", f"data.imagenet_root={tmp_path / 'flat'}",
                  "data.webvision_classes=2")
    (tmp_path / "wv2/info/synsets.txt").unlink()
    with pytest.raises(DataError, match=r"webvision: missing in .*: info/synsets.txt"):
        splits_of("webvision", f"data.root={tmp_path / 'wv2'}")


def test_webvision_records_and_ranks_both_test_sets(tmp_path):
    from noisybench.leaderboard import load_reference, load_runs, render, table

    write_webvision(tmp_path / "wv", tmp_path / "imagenet")
    options = [*SMALL, f"data.root={tmp_path / 'wv'}", f"data.imagenet_root={tmp_path / 'imagenet'}",
               "data.webvision_classes=2"]
    m = run("ce", "webvision", tmp_path / "runs/webvision/ce/seed0", options)
    recorded = json.loads((tmp_path / "runs/webvision/ce/seed0/metrics.json").read_text())
    scores = recorded["extra_tests"]["ilsvrc12_val"]
    assert scores == m["extra_tests"]["ilsvrc12_val"] and scores["num_samples"] == 4
    assert scores["top5_accuracy"] == 1.0 and 0 <= scores["accuracy"] <= 1  # two classes: top-5 holds both
    reference = tmp_path / "reference.csv"
    reference.write_text("method,variant,dataset,setting,noise,backbone,metric,value,source\n"
                         "ce,,webvision,noisy,real,small_cnn,test_accuracy,61.0,a paper\n"
                         "ce,,webvision,noisy,real,small_cnn,ilsvrc12_val_accuracy,57.5,a paper\n")
    board = table(load_runs(tmp_path / "runs"), load_reference(reference))
    assert board.loc[0, "extra_ilsvrc12_val_accuracy_mean"] == pytest.approx(scores["accuracy"])
    text = render(board, "markdown")
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "| test acc (last) |" in header and "| ilsvrc12_val acc |" in header
    assert "| paper test acc |" in header and "| paper ilsvrc12_val acc |" in header
    row = next(line for line in text.splitlines() if line.startswith("| ce"))
    assert f"| {100 * scores['accuracy']:.2f} |" in row and "| 57.50 |" in row


def test_webvision_data_check_and_prepare_carry_the_second_test_set(tmp_path, capsys):
    from noisybench.prepare import prepare

    write_webvision(tmp_path / "wv", tmp_path / "imagenet")
    options = [f"data.root={tmp_path / 'wv'}", f"data.imagenet_root={tmp_path / 'imagenet'}",
               "data.webvision_classes=2", "data.image_size=16"]
    assert main(["data", "check", "--dataset", "webvision", *options]) == 0
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("total")).split() == ["total", "6", "4", "4"]
    assert "ilsvrc12_val: all images present" in out
    prepare(make_config("ce", "webvision", overrides=[*options, "progress=false"]), tmp_path / "prepared", workers=1)
    raw = splits_of("webvision", *options)
    prepared = splits_of("webvision", f"data.prepared={tmp_path / 'prepared'}", "data.image_size=16")
    assert list(prepared.extra_tests) == ["ilsvrc12_val"]
    assert list(image_paths(prepared.extra_tests["ilsvrc12_val"])) == list(image_paths(raw.extra_tests["ilsvrc12_val"]))
    assert prepared.extra_tests["ilsvrc12_val"][3][0].shape == (3, 16, 16)


# -- Red Mini-ImageNet (CNWL) --------------------------------------------------------------


def test_redimagenet_level_file_web_flags_and_jpeg_validation_names(tmp_path):
    expected = write_redimagenet(tmp_path)
    splits = splits_of("redimagenet", f"data.root={tmp_path}", "noise=real:0.4")
    assert splits.num_classes == 100 and splits.noise.type == "real" and splits.noise.rate == 0.4
    assert np.array_equal(splits.train_labels, expected["noisy"])
    assert [p.rsplit("/", 1)[1] for p in image_paths(splits.train)] == expected["names"]
    assert np.array_equal(splits.is_noisy(), expected["flags"])  # web images wrong but the one annotated clean
    assert np.array_equal(splits.true_labels, np.where(expected["flags"] == 1, UNKNOWN, expected["noisy"]))
    assert image_paths(splits.test)[1].endswith("validation/1/ILSVRC2012_val_00000008.JPEG")  # listed as .jpg
    assert np.array_equal(labels_of(splits.test), expected["val"])


def test_redimagenet_clean_level_takes_synthetic_noise_and_unpublished_levels_are_refused(tmp_path):
    write_redimagenet(tmp_path, val_folder="all_validation", annotations=False)
    clean = splits_of("redimagenet", f"data.root={tmp_path}")
    assert clean.noise.type == "none" and (clean.is_noisy() == 0).all()  # red_noise_nl_0.0: mini-ImageNet only
    flipped = splits_of("redimagenet", f"data.root={tmp_path}", "noise=symmetric:0.25")
    assert (flipped.train_labels != flipped.true_labels).sum() == 4  # round(0.25 * 3) = 1 in each of 4 classes
    with pytest.raises(DataError, match=r"noise=real:0.45 is not a published level; choose real:P with P one of 0.0"):
        splits_of("redimagenet", f"data.root={tmp_path}", "noise=real:0.45")
    with pytest.raises(DataError, match=r"redimagenet: missing in .*: split/red_noise_nl_0.8"):
        splits_of("redimagenet", f"data.root={tmp_path}", "noise=real:0.8")
    with pytest.raises(ConfigError, match=r"real:P chooses a noise level .* not of 'digits'"):
        splits_of("digits", "noise=real:0.4")


# -- torchvision's MNIST, Fashion-MNIST and KMNIST folders ---------------------------------


@pytest.mark.parametrize("name, folder, form", [("mnist", "MNIST", "gz"), ("fashionmnist", "FashionMNIST", "raw"),
                                                ("kmnist", "KMNIST", "legacy")])
def test_idx_folders_in_memory(tmp_path, name, folder, form):
    found = write_mnist_folder(tmp_path, folder, form=form)
    splits = splits_of(name, f"data.root={tmp_path}", "data.val_fraction=0.25")
    assert len(splits.train) == 30 and len(splits.val) == 10 and len(splits.test) == 20 and splits.channels == 1
    assert np.array_equal(labels_of(splits.test), found["test"][1])
    image, label, _ = splits.test[7]
    assert image.shape == (1, 28, 28) and np.array_equal(image.numpy()[0], found["test"][0][7]) and label == 7
    assert (splits.true_labels == splits.train_labels).all() and image_paths(splits.train) is None
    assert splits.class_names[0] == {"mnist": "0 - zero", "fashionmnist": "T-shirt/top", "kmnist": "o"}[name]


def test_idx_refusals_name_the_files(tmp_path):
    write_mnist_folder(tmp_path, "MNIST")
    with pytest.raises(DataError, match=r"kmnist: missing in .*KMNIST: raw/train-images-idx3-ubyte\[.gz\]"):
        splits_of("kmnist", f"data.root={tmp_path}")
    with pytest.raises(DataError, match=r"data.root is torchvision's root, the folder that holds MNIST/"):
        splits_of("mnist", f"data.root={tmp_path / 'MNIST'}")
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x0d\x01" + bytes(8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: not an IDX file of unsigned bytes"):
        splits_of("mnist", f"data.root={tmp_path}")


# -- compare over two of the new datasets; the datasets list -------------------------------


def test_compare_over_two_new_datasets_gives_one_leaderboard_each(tmp_path):
    from noisybench.compare import sweep
    from noisybench.leaderboard import report

    write_animal10n(tmp_path / "animal")
    write_redimagenet(tmp_path / "red")
    for dataset, options in (("animal10n", [f"data.root={tmp_path / 'animal'}"]),
                             ("redimagenet", [f"data.root={tmp_path / 'red'}", "noise=real:0.4"])):
        outcomes = sweep(["ce"], dataset, [0], tmp_path / "runs", [*SMALL, *options], announce=lambda _: None)
        assert [o.status for o in outcomes] == ["done"]
    text = report(tmp_path / "runs")
    titles = [line for line in text.splitlines() if line.startswith("**")]
    assert titles == ["**animal10n**, setting noisy, noise real", "**redimagenet**, setting noisy, noise real:0.4"]


def test_datasets_command_lists_each_new_dataset_on_one_line(capsys):
    main(["datasets"])
    lines = capsys.readouterr().out.splitlines()
    for name in ("animal10n", "webvision", "redimagenet", "mnist", "fashionmnist", "kmnist", "cifar10", "cifar100"):
        assert len([line for line in lines if line.split()[0] == name]) == 1


def test_idx_files_are_read_by_content_whatever_their_names_say(tmp_path):
    found = write_mnist_folder(tmp_path, "MNIST", form="raw")
    for path in (tmp_path / "MNIST/raw").glob("*-ubyte"):  # extracted bytes under the .gz names, no plain file
        path.with_name(path.name + ".gz").write_bytes(path.read_bytes())
        path.unlink()
    splits = splits_of("mnist", f"data.root={tmp_path}", "data.val_fraction=0")
    assert np.array_equal(splits.train_labels, found["train"][1])


def test_reference_rows_of_the_new_datasets_match_runs_by_their_recorded_noise():
    from types import SimpleNamespace

    from noisybench.leaderboard import REFERENCE, load_reference, paper_number

    reference = load_reference(REFERENCE)
    row = SimpleNamespace(method="dividemix", dataset="webvision", setting="noisy", noise="real",
                          model="inception_resnet_v2")
    assert paper_number(reference, row) == 77.32
    assert paper_number(reference, row, "ilsvrc12_val_accuracy") == 75.20
    cifar_n = SimpleNamespace(method="coteaching", dataset="cifar10", setting="noisy", noise="human:worse",
                              model="resnet34_cifar")
    assert paper_number(reference, cifar_n) == 83.83


def test_paper_configs_of_the_new_datasets_resolve():
    from pathlib import Path

    folder = Path(__file__).parents[1] / "benchmarks" / "configs"
    webvision = make_config("dividemix", config_file=folder / "webvision_dividemix.yaml")
    assert webvision["dataset"] == "webvision" and webvision["data"]["webvision_classes"] == 50
    assert webvision["lr_schedule"]["milestones"] == [40] and webvision["epochs"] == 80
    red = make_config("ce", config_file=folder / "redimagenet_red40.yaml")
    assert red["noise"] == "real:0.4" and red["data"]["image_size"] == 32
    animal = make_config("ce", config_file=folder / "animal10n_selfie.yaml")
    assert animal["lr_schedule"]["milestones"] == [50, 75] and animal["lr_schedule"]["gamma"] == 0.2
    make_config("elr", config_file=folder / "webvision_elr.yaml")
    cifar_n = make_config("coteaching", config_file=folder / "cifar10n_coteaching.yaml")
    assert cifar_n["noise"] == "human:worse" and cifar_n["coteaching"]["forget_rate"] == 0.4


@pytest.mark.parametrize("dataset", ["animal10n", "redimagenet"])
def test_data_check_and_prepare_on_the_photo_datasets(tmp_path, capsys, dataset):
    from noisybench.prepare import prepare

    if dataset == "animal10n":
        write_animal10n(tmp_path / "data")
        options = [f"data.root={tmp_path / 'data'}"]
    else:
        write_redimagenet(tmp_path / "data")
        options = [f"data.root={tmp_path / 'data'}", "noise=real:0.4"]
    main(["data", "check", "--dataset", dataset, *options, "data.image_size=16"])
    out = capsys.readouterr().out
    assert "train: all images present" in out and "test: all images present" in out
    expected = "over 12 training images of known truth" if dataset == "redimagenet" else "unknown (no true labels)"
    assert expected in out
    prepare(make_config("ce", dataset, overrides=[*options, "data.image_size=16", "progress=false"]),
            tmp_path / "prepared", workers=1)
    raw = splits_of(dataset, *options)
    prepared = splits_of(dataset, f"data.prepared={tmp_path / 'prepared'}", *options[1:])
    assert np.array_equal(prepared.train_labels, raw.train_labels) and prepared.identity != raw.identity
    assert list(image_paths(prepared.test)) == list(image_paths(raw.test))


def test_settings_with_known_truth_on_the_new_datasets(tmp_path):
    write_mnist_folder(tmp_path / "t", "MNIST")
    m = run("ce", "mnist", tmp_path / "verify", [*SMALL, f"data.root={tmp_path / 't'}", "noise=symmetric:0.5",
                                                  "setting=verify", "data.val_fraction=0", "model.name=small_cnn"])
    assert m["labels"]["noisy_accuracy"] == pytest.approx(0.5) and m["setting"] == "verify"
    write_redimagenet(tmp_path / "red")
    clean = splits_of("redimagenet", f"data.root={tmp_path / 'red'}", "setting=clean", "data.clean_fraction=0.25")
    assert len(clean.clean) == 3 and len(clean.train) == 9  # level 0.0: every label known, a quarter held out
    with pytest.raises(ConfigError, match="setting=clean: dataset 'redimagenet' has no clean set"):
        splits_of("redimagenet", f"data.root={tmp_path / 'red'}", "noise=real:0.4", "setting=clean")
