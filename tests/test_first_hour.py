"""What a new user meets first: help text, forgiving config values, clean output streams,
readable plots, exports as cleanlab users expect, and the choices a run states."""

import argparse

import pytest

from noisybench.api import make_config
from noisybench.cli import build_parser, main, one_process_note


def every_parser(parser: argparse.ArgumentParser, name: str = "noisybench"):
    """(name, parser) for the program and every subcommand, depth first."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from every_parser(sub, f"{name} {command}")


def test_usage_shows_key_value_and_every_option_and_subcommand_has_help():
    parsers = dict(every_parser(build_parser()))
    for command in ("run", "config", "compare", "export", "data check", "data prepare", "data bench"):
        assert "[key=value ...]" in parsers[f"noisybench {command}"].format_usage(), command
        assert "optimizer.lr=0.01" in parsers[f"noisybench {command}"].format_help(), command
    assert "key=value" not in parsers["noisybench leaderboard"].format_usage()  # it takes none
    missing = []
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions}
                missing += [f"{name} {command}" for command in action.choices if command not in helped]
            elif not action.help:
                missing.append(f"{name} {action.option_strings or action.dest}")
    assert not missing


def test_one_tracker_may_be_given_as_a_scalar():
    config = make_config("ce", "digits", None, ["report.trackers=tensorboard"])
    assert config["report"]["trackers"] == ["tensorboard"]
    with pytest.raises(Exception, match=r"'report.trackers' \(command line\).*got 'tensorbord'"):
        make_config("ce", "digits", None, ["report.trackers=tensorbord"])


def test_accelerate_cpu_with_several_processes_is_said_to_run_one(monkeypatch, capsys):
    for name in ("ACCELERATE_USE_CPU", "MASTER_PORT", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert one_process_note() is None
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # --cpu --num_processes 1: no MASTER_PORT
    assert one_process_note() is None
    monkeypatch.setenv("MASTER_PORT", "29500")  # --cpu --num_processes 2, as Accelerate's simple launcher sets it
    assert "runs one process" in one_process_note()
    monkeypatch.setenv("WORLD_SIZE", "2")  # a real 2-process launch
    assert one_process_note() is None


@pytest.fixture
def sweep(tmp_path):
    from test_report import write_record

    root = tmp_path / "sweep"
    for seed, acc in enumerate((0.90, 0.92, 0.94)):
        write_record(root, "ce", seed, acc, [1.0, 1.0, 1.0])
    for seed, acc in enumerate((0.95, 0.97)):
        write_record(root, "smp", seed, acc, [1.2, 1.4, 1.3], auc=0.99, label=0.9)
    return root


def test_csv_leaderboard_on_stdout_parses_with_plots_and_html_ends_with_a_newline(sweep, tmp_path, capsys):
    import csv
    import io

    assert main(["leaderboard", str(sweep), "--format", "csv", "--plots", str(tmp_path / "plots")]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0][:4] == ["dataset", "setting", "noise", "method"] and len(rows) == 3
    assert {len(row) for row in rows} == {len(rows[0])}
    assert "wrote" in captured.err and (tmp_path / "plots" / "accuracy_vs_time.png").exists()
    assert main(["leaderboard", str(sweep), "--format", "html"]) == 0
    assert capsys.readouterr().out.endswith("</table>\n")


def test_plots_name_dataset_noise_setting_count_seeds_and_tick_whole_epochs(sweep, tmp_path, monkeypatch):
    from matplotlib.ticker import MaxNLocator

    from noisybench import leaderboard, plots

    figures = {}
    monkeypatch.setattr(plots, "save", lambda figure, path: figures.setdefault(path.name, figure))
    leaderboard.write_plots(leaderboard.load_runs(sweep), tmp_path)
    scatter = figures["accuracy_vs_time.png"].axes[0]
    assert scatter.get_title() == "dataset digits, noise symmetric:0.4, setting noisy"
    assert {t.get_text() for t in scatter.texts} == {"n=3", "n=2"}  # beside each mean point
    curves = figures["label_curves.png"]
    assert curves._suptitle.get_text() == "dataset digits, noise symmetric:0.4, setting noisy"
    for ax in curves.axes:
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["smp (n=2)"]


def test_export_writes_class_ids_as_integers_and_sorts_folds_by_the_out_of_sample_score(tmp_path):
    import json
    import re

    import pandas as pd

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    pd.DataFrame({"index": [0, 1, 2, 3], "noisy_label": [0, 1, 2, 0], "train_loss": [0.1, 2.0, 0.5, 1.0],
                  "corrected_label": [0, 2, 2, 0]}).to_csv(run / "samples.csv", index=False)
    pd.DataFrame({"index": [0, 1, 2, 3], "cv_noise_score": [0.9, 0.2, 0.7, 0.4]}).to_csv(run / "cv_scores.csv",
                                                                                           index=False)
    pd.DataFrame({"split": ["test", "test"], "index": [0, 1], "label": [1, 2], "predicted_label": [1, 0],
                  "p_label": [0.9, 0.2], "noise_score": [0.1, 0.8]}).to_csv(run / "eval_samples.csv", index=False)
    assert main(["export", str(run), "--output", str(tmp_path / "s.csv")]) == 0
    text = (tmp_path / "s.csv").read_text()
    table = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    for column in ("noisy_label", "corrected_label", "predicted_label"):
        assert all(re.fullmatch(r"\d*", value) for value in table[column]), (column, text)
    train = table[table["split"] == "train"]
    assert train["index"].tolist() == ["0", "2", "3", "1"]  # by cv_noise_score, highest first
    assert train["train_loss"].astype(float).tolist() == [0.1, 0.5, 1.0, 2.0]  # the in-sample loss kept
    assert train["corrected_label"].tolist() == ["0", "2", "0", "2"] and train["flagged"].tolist()[-1] == "True"
    assert table[table["split"] == "test"]["index"].tolist() == ["1", "0"]


def test_the_docs_index_and_methods_page_list_every_installed_method():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from noisybench.plugins import installed_methods

    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("docs_hooks", root / "docs" / "hooks" / "methods.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    config = {"docs_dir": str(root / "docs")}
    names = list(installed_methods())
    assert len(names) >= 7
    for page in ("index.md", "methods/index.md"):
        source = (root / "docs" / page).read_text()
        built = hooks.on_page_markdown(source, SimpleNamespace(file=SimpleNamespace(src_uri=page)), config, None)
        assert "<!-- installed methods" not in built
        missing = [name for name in names if f"`{name}`" not in built]
        assert not missing, (page, missing)
    assert "[`coteaching`](methods/coteaching.md)" in hooks.methods_markdown(hooks.NAMES, root / "docs", ".")
    assert "| [`coteaching`](coteaching.md) | noisybench" in hooks.methods_markdown(hooks.TABLE, root / "docs", "methods")


def test_data_bench_and_config_report_digits_real_input_size_and_augmentation(capsys):
    assert main(["data", "bench", "--dataset", "digits", "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "input size 8x8 pixels" in out and "224" not in out
    assert "random crop padding 1, no flip" in out
    assert main(["config", "--method", "ce", "--dataset", "digits"]) == 0
    assert "image_size: 8  # dataset defaults" in capsys.readouterr().out


def small_images(root, grey: bool, count: int = 12):
    """A csv dataset of 16x16 PNGs, single-channel or colour; its key=value arguments."""
    import numpy as np
    from PIL import Image

    from fixtures import write_lines

    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for i in range(count):
        pixels = np.full((16, 16) if grey else (16, 16, 3), 40 * (i % 2) + 10, dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        rows.append(f"{i}.png,{'ab'[i % 2]}")
    write_lines(root / "m.csv", rows)
    return [f"data.root={root / 'm.csv'}", "data.num_workers=0"]


def train_augments(splits) -> list[str]:
    """The names of the training pipeline's random transforms (small-image pipeline)."""
    from noisybench.datasets import image_files

    small = image_files(splits.train).transform.transforms[1]  # Resize, then small_transforms
    return [type(t).__name__ for t in small.transforms[1:]]


def test_augmentation_keys_and_no_flip_of_single_channel_images_by_default(tmp_path):
    from noisybench.choices import choose
    from noisybench.datasets import build_dataset
    from noisybench.errors import ConfigError

    grey = small_images(tmp_path / "grey", grey=True)
    splits = build_dataset(make_config("ce", "csv", overrides=grey))
    assert train_augments(splits) == ["RandomCrop"]  # auto: a crop of 16 // 8 = 2, no flip
    assert splits.train.augmentation.crop_padding == 2 and not splits.train.augmentation.flip
    config = make_config("ce", "csv", overrides=[*grey, "data.flip=true", "data.crop_padding=0"])
    splits = build_dataset(config)
    assert train_augments(splits) == ["RandomHorizontalFlip"]
    chosen = choose(config, splits, auto_size=True)
    assert chosen["augmentation"] == {"crop_padding": 0, "flip": True, "why": ""}
    assert "augmentation: random crop padding 0, flip" in chosen["line"]
    colour = build_dataset(make_config("ce", "csv", overrides=small_images(tmp_path / "colour", grey=False)))
    assert train_augments(colour) == ["RandomCrop", "RandomHorizontalFlip"]
    digits = build_dataset(make_config("ce", "digits", overrides=["data.flip=true"]))
    assert (digits.train.augment.padding, digits.train.augment.flip) == (1, True)
    with pytest.raises(ConfigError, match="data.crop_padding=2: applies to images under 96 pixels"):
        build_dataset(make_config("ce", "csv", overrides=[*grey, "data.image_size=128", "data.crop_padding=2"]))


def test_prepared_single_channel_images_stay_unflipped_once_the_originals_are_gone(tmp_path):
    from noisybench.datasets import build_dataset
    from noisybench.datasets.augmentation import find_augmentation
    from noisybench.prepare import prepare

    grey = small_images(tmp_path / "grey", grey=True)
    prepare(make_config("ce", "csv", overrides=grey), tmp_path / "prepared", workers=1)
    for image in (tmp_path / "grey").glob("*.png"):
        image.unlink()
    splits = build_dataset(make_config("ce", "csv", overrides=[f"data.prepared={tmp_path / 'prepared'}"]))
    assert find_augmentation(splits.train).flip is False
