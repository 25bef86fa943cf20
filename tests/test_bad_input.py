"""Every bad input a user or an attacker tried, through the command line: exit status 2, one
line naming the key, file or line at fault, no traceback, nothing written where it should not be."""

import json
import os
import pickle
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Payload, hold_lock, run_digits
from fixtures import write_cifar, write_clothing1m, write_jpeg, write_lines
from noisybench.cli import main
from noisybench.lock import LOCK_FILE
from noisybench.models import SmallCNN

RUN = ["run", "--method", "ce", "--dataset", "digits", "progress=false", "epochs=1"]


def manifest(tmp, rows, name="m.csv", images=6, encoding="utf-8"):
    for i in range(images):
        write_jpeg(tmp / f"{i}.jpg", i % 2)
    (tmp / name).write_bytes("".join(f"{r}\n" for r in rows).encode(encoding))
    return ["run", "--method", "ce", "--dataset", "csv", "--output", str(tmp / "run"), "progress=false",
            f"data.root={tmp / name}", "model.name=small_cnn", "data.image_size=16", "epochs=1", "data.num_workers=0"]


def imagefolder(tmp, classes):
    for c, count in classes.items():
        (tmp / "data" / c).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_jpeg(tmp / "data" / c / f"{i}.jpg", hash(c) % 5)
    return ["run", "--method", "ce", "--dataset", "imagefolder", "--output", str(tmp / "run"), "progress=false",
            f"data.root={tmp / 'data'}", "model.name=small_cnn", "data.image_size=16", "epochs=1",
            "data.num_workers=0"]


def config_file(tmp, content: bytes):
    (tmp / "c.yaml").write_bytes(content)
    return [*RUN, "--output", str(tmp / "run"), "--config", str(tmp / "c.yaml")]


def weights_file(tmp, state):
    torch.save(state, tmp / "w.pth")
    return [*RUN, "--output", str(tmp / "run"), f"model.pretrained_file={tmp / 'w.pth'}"]


def finished_run(tmp, *extra):
    run_digits(tmp / "run", "epochs=1")
    return ["run", "--output", str(tmp / "run"), *extra]


def locked_folder(tmp):
    LIVE.append(hold_lock(tmp / "run"))
    return [*RUN, "--output", str(tmp / "run")]


LIVE: list = []


def clothing(tmp, **kwargs):
    write_clothing1m(tmp / "c", **kwargs)
    return ["run", "--method", "ce", "--dataset", "clothing1m", "--output", str(tmp / "run"), "progress=false",
            f"data.root={tmp / 'c'}", "model.name=small_cnn", "data.image_size=16", "epochs=1"]


def cifar(tmp, poison=None):
    write_cifar(tmp / "cifar", "cifar10", per_batch=10)
    args = ["run", "--method", "ce", "--dataset", "cifar10", "--output", str(tmp / "run"), "progress=false",
            f"data.root={tmp / 'cifar'}", "epochs=1"]
    if poison == "batch":
        (tmp / "cifar" / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(Payload(tmp / "pwned")))
    if poison == "human":
        torch.save({"worse_label": Payload(tmp / "pwned")}, tmp / "CIFAR-10_human.pt")
        args += ["noise=human:worse", f"data.cifar_n_file={tmp / 'CIFAR-10_human.pt'}"]
    return args


def digits(tmp, *overrides, method="ce"):
    return ["run", "--method", method, *RUN[3:], "--output", str(tmp / "run"), *overrides]


def clothing_without_val(tmp):
    args = clothing(tmp)
    (tmp / "c" / "clean_val_key_list.txt").write_text("")
    return args


def written(path, content):
    path.write_bytes(content)
    return path


CASES = {
    # -- config values (command line) ------------------------------------------------------
    "empty epochs": (lambda t: digits(t, "epochs="), r"config key 'epochs' \(command line\).*got None"),
    "negative seed": (lambda t: digits(t, "seed=-1"), r"'seed' \(command line\).*greater than or equal to 0"),
    "negative lr": (lambda t: digits(t, "optimizer.lr=-1"), r"'optimizer.lr'.*greater than 0"),
    "negative momentum": (lambda t: digits(t, "optimizer.momentum=-1"), r"'optimizer.momentum'"),
    "drop rate 2": (lambda t: digits(t, "model.drop_rate=2"), r"'model.drop_rate'.*less than 1"),
    "finetune epochs abc": (lambda t: digits(t, "finetune.epochs=abc"), r"'finetune.epochs'.*'abc'"),
    "milestones abc": (lambda t: digits(t, "lr_schedule.milestones=abc"), r"'lr_schedule.milestones'.*'abc'"),
    "root a list": (lambda t: digits(t, "data.root=[1,2]"), r"'data.root'.*\[1, 2\]"),
    "fractions over 1": (lambda t: digits(t, "data.val_fraction=0.9", "data.test_fraction=0.9"),
                         r"'data.val_fraction'.*val_fraction \+ data.test_fraction must be below 1"),
    "finetune lr abc": (lambda t: digits(t, "finetune.lr=abc"), r"'finetune.lr'.*'abc'"),
    "histogram epochs abc": (lambda t: digits(t, "report.histogram_epochs=abc"), r"'report.histogram_epochs'"),
    "negative gamma": (lambda t: digits(t, "lr_schedule.gamma=-1"), r"'lr_schedule.gamma'.*greater than 0"),
    "optimizer adam": (lambda t: digits(t, "optimizer.name=adam"), r"'optimizer.name'.*'sgd' or 'adamw'"),
    "batch size 0": (lambda t: digits(t, "batch_size=0"), r"'batch_size'"),
    "precision fp8": (lambda t: digits(t, "mixed_precision=fp8"), r"'mixed_precision'"),
    "setting dirty": (lambda t: digits(t, "setting=dirty"), r"'setting'"),
    "noise uniform": (lambda t: digits(t, "noise=uniform:0.2"), r"unknown noise type 'uniform'"),
    "workers -1": (lambda t: digits(t, "data.num_workers=-1"), r"'data.num_workers'"),
    "decoder opencv": (lambda t: digits(t, "data.decoder=opencv"), r"'data.decoder'"),
    "max pixels 0": (lambda t: digits(t, "data.max_pixels=0"), r"'data.max_pixels'"),
    "epochs a string": (lambda t: digits(t, "epochs=three"), r"'epochs' \(command line\): Input should be a valid integer"),
    "typo in a key": (lambda t: digits(t, "optimizer.lrr=0.1"), r"unknown config key 'optimizer.lrr'.*'optimizer.lr'"),
    "smp alpha 2": (lambda t: digits(t, "smp.alpha=2", method="smp"), r"smp.alpha"),
    "sinet top k abc": (lambda t: digits(t, "sinet.prototype_top_k=abc", method="sinet"),
                        r"'sinet.prototype_top_k' expects int or null, got 'abc'"),
    "lsw weights_from 3": (lambda t: digits(t, "lsw.weights_from=3", "setting=clean", method="lsw"),
                           r"'lsw.weights_from' expects str or null, got 3"),
    "lsw without clean set": (lambda t: digits(t, method="lsw"), r"lsw needs a clean set"),
    # -- config files ------------------------------------------------------------------------
    "binary config": (lambda t: config_file(t, bytes(range(256)) * 4), r"c.yaml: not a text file"),
    "config a list": (lambda t: config_file(t, b"- 1\n- 2\n"), r"c.yaml: expected a mapping"),
    "config not yaml": (lambda t: config_file(t, b"epochs: [1,\n"), r"c.yaml: not valid YAML"),
    "config key in file": (lambda t: config_file(t, b"optimizer:\n  lr: -3\n"), r"'optimizer.lr' \(config file\)"),
    "missing config": (lambda t: [*RUN, "--config", str(t / "absent.yaml")], r"config file not found"),
    # -- names ---------------------------------------------------------------------------------
    "unknown method": (lambda t: ["run", "--method", "smpp", "--dataset", "digits"], r"unknown method 'smpp'.*'smp'"),
    "unknown dataset": (lambda t: ["run", "--method", "ce", "--dataset", "digit"], r"unknown dataset 'digit'"),
    "unknown model": (lambda t: digits(t, "model.name=resnet5"), r"'resnet5' is not a timm model"),
    # -- pretrained weights ----------------------------------------------------------------------
    "pretrained without file": (lambda t: digits(t, "model.pretrained=true"), r"needs model.pretrained_file"),
    "pretrained file absent": (lambda t: digits(t, f"model.pretrained_file={t / 'no.pth'}"), r"no such file"),
    "corrupt pretrained file": (lambda t: digits(t, f"model.pretrained_file={written(t / 'w.pth', b'garbage')}"),
                                r"cannot read .*w.pth as weights"),
    "weights of another model": (lambda t: weights_file(t, {"conv.weight": torch.zeros(3, 3)}),
                                 r"w.pth does not fit SmallCNN: .*missing"),
    "weights of another width": (lambda t: weights_file(
        t, SmallCNN(width=8, in_chans=1).state_dict()), r"of another shape"),
    "weights holding code": (lambda t: weights_file(t, {"w": Payload(t / "pwned")}), r"cannot read .*w.pth"),
    # -- run folders -----------------------------------------------------------------------------
    "resume nothing": (lambda t: ["run", "--output", str(t / "nowhere"), "--resume"], r"nowhere holds no run"),
    "output is a file": (lambda t: [*RUN, "--output", str(written(t / "f", b"x"))], r"noisybench: error: .*f"),
    "folder in use": (locked_folder, r"in use by process \d+"),
    "resume another seed": (lambda t: finished_run(t, "--resume", "seed=4"), r"cannot resume .*seed \(0 -> 4\)"),
    "run over a run": (lambda t: finished_run(t, "--method", "ce", "--dataset", "digits"), r"already holds a run"),
    "evaluate no run": (lambda t: ["evaluate", str(t)], r"no config.yaml; not a run folder"),
    "export no samples": (lambda t: ["export", str(t)], r"no samples.csv"),
    "export foreign csv": (lambda t: ["export", str(written(t / "samples.csv", b"a,b\n1,2\n").parent)],
                           r"not a noisybench samples table"),
    "leaderboard nothing": (lambda t: ["leaderboard", str(t)], r"no run records"),
    "compare path method": (lambda t: ["compare", "--methods", "../../../x", "--dataset", "digits", "--output",
                                       str(t / "sweep")], r"unknown method '../../../x'"),
    "compare bad option": (lambda t: ["compare", "--methods", "ce,smp", "--dataset", "digits", "--output",
                                      str(t / "sweep"), "smp.alpha=5"], r"smp.alpha and smp.threshold_quantile"),
    # -- data ------------------------------------------------------------------------------------
    "csv empty": (lambda t: manifest(t, []), r"m.csv: empty"),
    "csv header only": (lambda t: manifest(t, ["path,label"]), r"m.csv: a header and no rows"),
    "csv ragged row": (lambda t: manifest(t, ["path,label", "0.jpg,a", "1.jpg,b,extra"]), r"m.csv:3: 3 fields"),
    "csv latin-1": (lambda t: manifest(t, ["path,label", "0.jpg,café", "1.jpg,b"], encoding="latin-1"),
                    r"m.csv:2: not UTF-8"),
    "csv ids and 0.0": (lambda t: manifest(t, ["path,label", "0.jpg,0", "1.jpg,1", "2.jpg,0.0", "3.jpg,1"]),
                        r"m.csv:4: label '0.0' mixes class names and integer ids"),
    "csv one class": (lambda t: manifest(t, ["path,label"] + [f"{i}.jpg,a" for i in range(6)]), r"one class \(a\)"),
    "csv no label column": (lambda t: manifest(t, ["path,class", "0.jpg,a"]), r"m.csv: missing column\(s\) label"),
    "csv empty label": (lambda t: manifest(t, ["path,label", "0.jpg,a", "1.jpg,"]), r"m.csv:3: empty 'label'"),
    "csv missing image": (lambda t: manifest(t, ["path,label", "0.jpg,a", "9.jpg,b"] +
                                             [f"{i}.jpg,{'ab'[i % 2]}" for i in range(1, 6)]), r"missing"),
    "csv id without images": (lambda t: manifest(t, ["path,label"] + [f"{i}.jpg,{2 * (i % 2)}" for i in range(6)]),
                              r"class\(es\) 1 have no training images"),
    "folder empty class": (lambda t: imagefolder(t, {"cat": 6, "dog": 6, "emu": 0}),
                           r"class\(es\) emu have no training images \(an empty class folder\?\)"),
    "folder one class": (lambda t: imagefolder(t, {"cat": 6, ".ipynb_checkpoints": 3}), r"one class \(cat\)"),
    "clothing empty val": (clothing_without_val, r"clean_val_key_list.txt .*list no keys"),
    "cifar missing": (lambda t: ["run", "--method", "ce", "--dataset", "cifar10", f"data.root={t}"], r"missing in"),
    "cifar batch holding code": (lambda t: cifar(t, "batch"), r"data_batch_1: not a plain pickle of arrays"),
    "cifar-N holding code": (lambda t: cifar(t, "human"), r"CIFAR-10_human.pt: cannot be read as tensors"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a case without --output writes its default runs/ folder here, not in the checkout
    build, expected = CASES[name]
    argv = build(tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        while LIVE:
            LIVE.pop().kill()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("noisybench: error: "), err
    assert __import__("re").search(expected, lines[0]), lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()  # no file's code ran
    assert not (tmp_path.parent / "x").exists() and not (tmp_path / "sweep").exists()  # nothing written by a refused sweep


def test_a_config_key_given_as_a_flag_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--method", "ce", "--dataset", "digits", "--epochs", "3"])
    assert exit_.value.code == 2
    assert "config keys are given as key=value, e.g. epochs=..." in capsys.readouterr().err


def test_yaml_numbers_without_a_dot_are_numbers():
    from noisybench.api import make_config

    assert make_config("ce", "digits", overrides=["optimizer.lr=1e-3"])["optimizer"]["lr"] == 0.001


# -- images -----------------------------------------------------------------------------------


def images_of(tmp_path, decoder, *files):
    from noisybench.datasets.images import ImageFiles

    files = ImageFiles([str(tmp_path / f) for f in files], np.zeros(len(files)), lambda image: image, decoder,
                       max_pixels=10_000)
    return files, [files.load(i) for i in range(len(files))]


@pytest.mark.parametrize("decoder", ["torchvision", "pil"])
def test_bmp_tiff_ppm_webp_decode(tmp_path, decoder):
    pixels = np.random.default_rng(0).integers(0, 255, size=(12, 10, 3), dtype=np.uint8)
    names = []
    for form in ("bmp", "tiff", "ppm", "png"):
        Image.fromarray(pixels).save(tmp_path / f"x.{form}")
        names.append(f"x.{form}")
    files, loaded = images_of(tmp_path, decoder, *names)
    assert not files.corrupt.any()
    for image in loaded:
        array = image.permute(1, 2, 0).numpy() if torch.is_tensor(image) else np.asarray(image)
        assert np.array_equal(array, pixels)  # lossless formats: every pixel as written


@pytest.mark.parametrize("decoder", ["torchvision", "pil"])
def test_16_bit_images_are_scaled_not_clipped(tmp_path, decoder):
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "g16.png")
    files, (image,) = images_of(tmp_path, decoder, "g16.png")
    array = np.asarray(image)
    assert not files.corrupt.any() and array.dtype == np.uint8
    assert list(array[0, :, 0]) == [0, 100, 255]


def png_header_claiming(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` pixels (its data is one pixel)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("decoder", ["torchvision", "pil"])
def test_an_oversized_image_counts_as_corrupt_without_being_decoded(tmp_path, decoder):
    png_header_claiming(tmp_path / "bomb.png", 20_000, 20_000)  # 400 MP: PIL's bomb error, 1.2 GB decoded
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")  # 20,000 px: over this test's limit of 10,000
    Image.new("RGB", (50, 50)).save(tmp_path / "small.png")
    files, loaded = images_of(tmp_path, decoder, "bomb.png", "big.png", "small.png")
    assert files.corrupt.tolist() == [True, True, False]
    assert loaded[0].size == files.fallback_size


def test_hidden_files_and_folders_are_not_images_or_classes(tmp_path):
    from noisybench.api import make_config
    from noisybench.datasets import build_dataset

    imagefolder(tmp_path, {"cat": 6, "dog": 6, ".ipynb_checkpoints": 2})
    write_jpeg(tmp_path / "data" / "cat" / ".hidden.jpg", 0)
    write_jpeg(tmp_path / "data" / "cat" / ".thumbs" / "t.jpg", 0)
    splits = build_dataset(make_config("ce", "imagefolder", overrides=[f"data.root={tmp_path / 'data'}"]))
    assert splits.class_names == ["cat", "dog"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12


# -- operations -------------------------------------------------------------------------------


def test_sigint_and_sigterm_leave_a_resumable_run_and_one_line(tmp_path):
    import signal
    import time

    for number, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        out = tmp_path / f"run{number}"
        proc = subprocess.Popen([sys.executable, "-m", "noisybench", *RUN[:-1], "epochs=40", "--output", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        deadline = time.time() + 120
        while not (out / "checkpoint" / "state.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 130, err
        assert len(lines) == 1 and "Traceback" not in err, err
        assert f"noisybench run --output {out} --resume" in lines[0] and "interrupted: epochs 1-" in lines[0]
        assert not (out / "metrics.json").exists() and not (out / LOCK_FILE).exists()
        assert (out / "checkpoint" / "model.safetensors").exists()  # the last complete epoch, intact
    # the line's command finishes the run
    assert main(["run", "--output", str(tmp_path / "run0"), "--resume"]) == 0
    assert [h["epoch"] for h in json.loads((tmp_path / "run0" / "metrics.json").read_text())["history"]] == list(
        range(1, 41))


def test_a_run_may_start_from_another_runs_weights_and_records_how_many(tmp_path):
    first = run_digits(tmp_path / "a", "epochs=1")
    weights = tmp_path / "a" / "checkpoint" / "model.safetensors"  # keys carry the wrapper's "backbone." prefix
    second = run_digits(tmp_path / "b", "epochs=1", f"model.pretrained_file={weights}")
    assert first["pretrained"] == {"file": None, "tensors_loaded": 0}
    from safetensors.torch import load_file

    assert second["pretrained"] == {"file": str(weights), "tensors_loaded": len(load_file(weights)) - 2}  # but fc


def test_a_full_disk_ends_in_one_line_naming_the_checkpoint(tmp_path, capsys, monkeypatch):
    import noisybench.checkpoint

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(noisybench.checkpoint, "save_file", full)
    assert main([*RUN, "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'run' / 'checkpoint.tmp'}: cannot write the checkpoint: [Errno 28] No space left" in err


def test_unreadable_records_are_named_and_skipped(tmp_path, capsys):
    run_digits(tmp_path / "digits" / "ce" / "seed0", "epochs=1")
    for folder, text in (("seed1", '{"schema_version": 2, "method"'), ("seed2", "[1, 2, 3]")):
        (tmp_path / "digits" / "ce" / folder).mkdir()
        (tmp_path / "digits" / "ce" / folder / "metrics.json").write_text(text)
    assert main(["leaderboard", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| ce | 1 |" in captured.out
    assert captured.err.count("warning: skipping") == 2 and "seed1" in captured.err and "seed2" in captured.err
    # a run whose record was truncated is recorded anew on resume; export reads past it
    assert main(["run", "--output", str(tmp_path / "digits" / "ce" / "seed0"), "--resume"]) == 0
    (tmp_path / "digits" / "ce" / "seed0" / "metrics.json").write_text("{trunc")
    assert main(["export", str(tmp_path / "digits" / "ce" / "seed0")]) == 0
    assert main(["run", "--output", str(tmp_path / "digits" / "ce" / "seed0"), "--resume"]) == 0
    assert json.loads((tmp_path / "digits" / "ce" / "seed0" / "metrics.json").read_text())["schema_version"] == 2


# -- plugin authors ---------------------------------------------------------------------------


def test_plugin_faults_end_in_one_line_naming_method_and_hook(tmp_path):
    from noisybench import hookimpl
    from noisybench.errors import ConfigError

    class WrongArgument:
        @hookimpl
        def noisybench_loss(self, run, logit):
            return logit.sum()

    class VectorLoss:
        @hookimpl(tryfirst=True)
        def noisybench_loss(self, logits, labels):
            return torch.nn.functional.cross_entropy(logits, labels, reduction="none")

    with pytest.raises(ConfigError) as error:
        run_digits(tmp_path / "a", "epochs=1", plugins=[WrongArgument()])
    assert "\n" not in str(error.value) and "noisybench_loss" in str(error.value) and "logit" in str(error.value)
    with pytest.raises(ConfigError) as error:
        run_digits(tmp_path / "b", "epochs=1", plugins=[VectorLoss()])
    assert str(error.value) == ("method 'ce': hook noisybench_loss returned (64,), not a scalar tensor (reduce the "
                                "per-sample losses, e.g. with .mean())")
