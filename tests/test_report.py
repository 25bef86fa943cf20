"""Sweeps, leaderboards, the reference numbers, plots and the per-sample export."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import hold_lock, run_digits
from noisybench import hookimpl, leaderboard
from noisybench.cli import main
from noisybench.compare import sweep
from noisybench.errors import NoisybenchError
from noisybench.export import suspects

GOLDEN = Path(__file__).parent / "golden"
REFERENCE = Path(__file__).parents[1] / "benchmarks" / "reference.csv"


def write_record(root: Path, method: str, seed: int, acc: float, seconds: list[float], auc=None, label=None,
                 noise=None, schema=1, drop=()):
    record = {
        "schema_version": schema, "method": method, "dataset": "digits", "setting": "noisy", "seed": seed,
        "model": "small_cnn", "noise": noise or {"type": "symmetric", "rate": 0.4},
        "test": {"accuracy": acc, "macro_precision": acc, "macro_recall": acc, "macro_f1": acc - 0.01},
        "best_val": {"epoch": 2, "accuracy": acc, "test_accuracy": acc + 0.01},
        "labels": {"noisy_accuracy": 0.6, "corrected_accuracy": label, "corrected_accuracy_initial": label,
                   "changed_fraction": None if label is None else 0.4},
        "detection": {"auc": auc, "fdr": None, "recall": None, "f1": None},
        "efficiency": {"total_seconds": sum(seconds), "epoch_seconds": seconds, "peak_memory_bytes": 100 * 2**20},
        "history": [{"epoch": i + 1, "label_accuracy": label, "changed_fraction": None if label is None else 0.4}
                    for i in range(len(seconds))],
    }
    for key in drop:
        record.pop(key)
    folder = root / "digits" / method / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def records(tmp_path):
    root = tmp_path / "sweep"
    write_record(root, "ce", 0, 0.90, [1.0, 1.0])
    write_record(root, "ce", 1, 0.92, [1.0, 1.0])
    write_record(root, "ce", 2, 0.94, [1.0, 1.0])
    write_record(root, "smp", 0, 0.95, [1.2, 1.4], auc=0.99, label=0.90)
    write_record(root, "smp", 1, 0.97, [1.2, 1.4], auc=0.97, label=0.94)
    write_record(root, "gce", 0, 0.80, [0.9, 0.9], drop=("detection",))  # an older record without detection
    failed = root / "digits" / "smp" / "seed2"
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"method": "smp", "seed": 2, "error": "boom"}))
    return root


def test_mean_std_and_counts_by_hand(records):
    board = leaderboard.table(leaderboard.load_runs(records))
    ce = board[board.method == "ce"].iloc[0]
    smp = board[board.method == "smp"].iloc[0]
    assert ce.n == 3 and ce.failed == 0 and smp.n == 2 and smp.failed == 1
    assert ce.test_accuracy_mean == pytest.approx(0.92)
    assert ce.test_accuracy_std == pytest.approx(0.02)  # sample std of .90 .92 .94
    assert smp.test_accuracy_std == pytest.approx(np.sqrt(((0.95 - 0.96) ** 2 + (0.97 - 0.96) ** 2) / 1))
    assert smp.seconds_per_epoch_mean == pytest.approx(1.3) and smp.ratio_to_ce == pytest.approx(1.3)
    assert np.isnan(ce.detection_auc_mean) and smp.detection_auc_mean == pytest.approx(0.98)
    assert list(board.method) == ["ce", "gce", "smp"]  # ce first, then by name


def test_golden_markdown_and_csv(records):
    board = leaderboard.table(leaderboard.load_runs(records))
    assert leaderboard.render(board, "markdown") == (GOLDEN / "leaderboard.md").read_text()
    assert leaderboard.render(board, "csv") == (GOLDEN / "leaderboard.csv").read_text()


def test_latex_and_html_render(records):
    board = leaderboard.table(leaderboard.load_runs(records))
    assert "\\begin{tabular}" in leaderboard.render(board, "latex")
    assert "<table" in leaderboard.render(board, "html") and "92.00 ± 2.00" in leaderboard.render(board, "html")


def test_runs_of_different_experiments_are_never_pooled(tmp_path):
    """Same method, dataset, noise and seed, different model and epochs: two rows, each n=1,
    labelled by what differs; the seeds of one experiment pool into one row."""
    for folder, overrides in (("a", ["epochs=1", "model.drop_rate=0.2"]), ("b", ["epochs=2"]),
                              ("c", ["epochs=2", "seed=1"])):
        run_digits(tmp_path / "runs" / folder, "noise=symmetric:0.4", *overrides)
    board = leaderboard.table(leaderboard.load_runs(tmp_path / "runs"))
    assert len(board) == 2 and sorted(board.n) == [1, 2]
    variants = set(board.variant)
    assert variants == {"epochs=1, model.drop_rate=0.2", "epochs=2, model.drop_rate=0.0"}
    two = board[board.n == 2].iloc[0]
    records_b = [json.loads((tmp_path / "runs" / f / "metrics.json").read_text()) for f in "bc"]
    assert two.fingerprint == records_b[0]["fingerprint"] == records_b[1]["fingerprint"]
    assert two.test_accuracy_mean == pytest.approx(np.mean([r["test"]["accuracy"] for r in records_b]))
    text = leaderboard.render(board, "markdown")
    assert "| ce | epochs=1, model.drop_rate=0.2 | 1 |" in text and "| ce | epochs=2, model.drop_rate=0.0 | 2 |" in text


def test_a_cell_over_fewer_runs_shows_its_own_n(tmp_path):
    write_record(tmp_path, "smp", 0, 0.95, [1.0], auc=0.9, label=0.9)
    write_record(tmp_path, "smp", 1, 0.97, [1.0], auc=None, label=0.8)
    board = leaderboard.table(leaderboard.load_runs(tmp_path))
    row = board.iloc[0]
    assert row.n == 2 and row.detection_auc_n == 1 and row.label_accuracy_n == 2
    text = leaderboard.render(board, "markdown")
    assert "| 90.00 (n=1) |" in text and "| 85.00 ± 7.07 |" in text


def test_unknown_schema_version_is_named_and_skipped(records, capsys):
    before = len(leaderboard.load_runs(records))
    path = write_record(records, "lsw", 0, 0.9, [1.0], schema=99) / "metrics.json"
    runs = leaderboard.load_runs(records)
    assert len(runs) == before and str(path.parent) not in set(runs["folder"])
    assert re.search(f"warning: skipping {re.escape(str(path))}: .*schema_version 99", capsys.readouterr().err)


def test_leaderboard_cli_and_missing_folder(records, tmp_path, capsys):
    out = tmp_path / "board.csv"
    assert main(["leaderboard", str(records), "--format", "csv", "--output", str(out), "--plots", str(tmp_path)]) == 0
    assert out.read_text() == (GOLDEN / "leaderboard.csv").read_text()
    assert (tmp_path / "accuracy_vs_time.png").stat().st_size > 1000
    assert (tmp_path / "label_curves.png").stat().st_size > 1000  # smp corrects labels
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_reference_joins_where_the_setting_matches(records, tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("method,variant,dataset,setting,noise,backbone,metric,value,source\n"
                   "smp,,digits,noisy,symmetric:0.4,small_cnn,test_accuracy,95.00,made up for the test\n"
                   "smp,m=320,digits,noisy,symmetric:0.4,small_cnn,test_accuracy,10.00,another variant\n"
                   "ce,,digits,noisy,symmetric:0.2,small_cnn,test_accuracy,50.00,another noise\n")
    board = leaderboard.table(leaderboard.load_runs(records), leaderboard.load_reference(ref))
    smp = board[board.method == "smp"].iloc[0]
    assert smp.paper_test_accuracy == 95.0 and smp.difference == pytest.approx(1.0)
    assert np.isnan(board[board.method == "ce"].iloc[0].paper_test_accuracy)
    text = leaderboard.render(board, "markdown")
    assert "| 95.00 | +1.00 |" in text


# -- the reference file -----------------------------------------------------------------------

TABLE_ROWS = {  # numbers in each paper's result tables
    "SMP ICCV 2019 Table 1": 13, "SMP ICCV 2019 Table 2": 3, "SMP ICCV 2019 Table 3": 16,
    "SMP ICCV 2019 Table 4": 6, "SMP ICCV 2019 Table 5": 4,
    "LSW 2024 Table 1": 198, "LSW 2024 Table 2": 198, "LSW 2024 Table 3": 77, "LSW 2024 Table 4": 77,
    "LSW 2024 Table 5": 10, "LSW 2024 Table 6": 18, "LSW 2024 Table 7": 14,
    "SINet 2020 Table 1": 6, "SINet 2020 Table 2": 10, "SINet 2020 Table 3": 4, "SINet 2020 Table 4": 8,
    "SINet 2020 Table 5": 8, "SINet 2020 Table 6": 6, "SINet 2020 Table 7": 24, "SINet 2020 Table 8": 8,
    "SINet 2020 Table 9": 5, "thesis 2024": 6,  # the thesis's tables hold no numbers: those of its §4 text
    "SOP ICML 2022 Table 1": 4,
}


def test_reference_is_complete_and_every_row_parses():
    ref = leaderboard.load_reference(REFERENCE)
    tables = ref["source"].str.extract(r"^(.*?Table \d+|thesis 2024|.*? README|.*? comparison table|.*? poster)")[0]
    assert tables.value_counts().to_dict() == TABLE_ROWS | {
        "ELR authors' code README": 20, "Co-teaching authors' code README": 9,  # every number of their tables
        "Nested-Co-teaching README": 6, "InstanceGM authors' code README": 12,
        "DivideMix (Li, Socher & Hoi), ICLR 2020, Clothing1M comparison table": 1,
        "ELR (Liu et al.), NeurIPS 2020, Clothing1M comparison table": 1,
        "SCE PyTorch reproduction README": 16,
        # Meta-Weight-Net's uniform-noise (46: S-Model has no 60% entry), flip-noise (48) and Clothing1M (8) tables,
        # as the authors' poster prints them; the confident-learning paper's CIFAR-10 table (9 rows x 12 columns)
        "MW-Net NeurIPS 2019 poster": 102, "CL JAIR 2021 Table 2": 108}
    assert ref["value"].notna().all() and (ref["value"] >= 0).all()
    for column in ("method", "dataset", "setting", "noise", "backbone", "metric", "source"):
        assert (ref[column] != "").all(), column
    assert set(ref["setting"]) <= {"noisy", "verify", "clean"}
    spelled = ref["noise"].str.fullmatch(r"(symmetric|uniform|asymmetric|mapped|instance|flip2|real):0\.\d\d?|human:[a-z]+\d?"
                                         r"|real|unspecified|clmatrix:0\.\d/0\.\d")
    assert spelled.all(), ref.loc[~spelled, "noise"].unique()
    # spot checks against the papers
    mwnet = ref[(ref.method == "mwnet") & (ref.dataset == "cifar10")].set_index("noise")["value"]
    assert mwnet.to_dict() == {"uniform:0.4": 89.27, "uniform:0.6": 84.07, "flip2:0.2": 90.33, "flip2:0.4": 87.54}
    pbnr = ref[(ref.method == "cleanlab") & (ref.variant == "retrained with Co-teaching")].set_index("noise")["value"]
    assert (pbnr["clmatrix:0.2/0.0"], pbnr["clmatrix:0.4/0.0"], pbnr["clmatrix:0.6/0.6"]) == (90.7, 87.1, 36.4)
    smp = ref[(ref.method == "smp") & (ref.dataset == "clothing1m") & (ref.variant == "") & (ref.metric == "test_accuracy")]
    assert set(smp.value) == {74.45, 76.44, 81.16}
    lsw = ref[(ref.method == "lsw") & (ref.dataset == "clothing1m")]
    assert sorted(lsw.value) == [74.95, 75.91]
    elr = ref[(ref.method == "elr") & (ref.variant == "") & (ref.dataset == "cifar10")].set_index("noise")["value"]
    assert elr.to_dict() == {"symmetric:0.2": 91.16, "symmetric:0.4": 89.15, "symmetric:0.6": 86.12,
                             "symmetric:0.8": 73.86, "mapped:0.4": 90.12}
    coteaching = ref[(ref.method == "coteaching") & (ref.dataset == "cifar10") & (ref.backbone == "cnn9")
                     & ~ref.noise.str.startswith("human")].set_index("noise")["value"]  # CIFAR-N and MW-Net rows aside
    assert coteaching.to_dict() == {"asymmetric:0.45": 72.85, "symmetric:0.5": 74.49, "symmetric:0.2": 82.18}
    cifar_n = ref[ref.noise.str.startswith("human:") & ref.method.isin(["jocor", "coteachingplus"])]
    cifar_n = cifar_n.set_index(["method", "noise"])["value"]
    assert (cifar_n["jocor", "human:aggre"], cifar_n["coteachingplus", "human:worse"], len(cifar_n)) == (91.44, 83.26, 12)


# -- sweeps -----------------------------------------------------------------------------------


class Boom:
    @hookimpl
    def noisybench_epoch_start(self, run, epoch):
        if run.method == "smp":
            raise RuntimeError("boom")


def test_sweep_skips_finished_resumes_interrupted_and_survives_failures(tmp_path):
    from conftest import CrashAt

    common = ["epochs=2", "progress=false", "noise=symmetric:0.4"]
    with pytest.raises(KeyboardInterrupt):  # an interrupted ce seed 1
        run_digits(tmp_path / "digits" / "ce" / "seed1", "epochs=2", "seed=1", "noise=symmetric:0.4",
                   plugins=[CrashAt(2)])
    outcomes = sweep(["ce", "smp"], "digits", [0, 1], tmp_path, common, plugins=[Boom()])
    status = {(o.method, o.seed): o.status for o in outcomes}
    assert status == {("ce", 0): "done", ("ce", 1): "resumed", ("smp", 0): "failed", ("smp", 1): "failed"}
    failed = json.loads((tmp_path / "digits" / "smp" / "seed0" / "failed.json").read_text())
    assert "boom" in failed["error"] and "RuntimeError" in failed["traceback"]
    again = sweep(["ce", "smp"], "digits", [0, 1], tmp_path, [*common, "smp.start_epoch=2"])
    status = {(o.method, o.seed): o.status for o in again}
    assert status[("ce", 0)] == status[("ce", 1)] == "finished before"
    assert status[("smp", 0)] == "done" and not (tmp_path / "digits" / "smp" / "seed0" / "failed.json").exists()
    board = leaderboard.table(leaderboard.load_runs(tmp_path))
    assert list(board.n) == [2, 2]


def test_sweep_leaves_a_run_held_by_another_process_to_it(tmp_path):
    held = tmp_path / "digits" / "ce" / "seed1"
    holder = hold_lock(held)
    try:
        outcomes = sweep(["ce"], "digits", [0, 1], tmp_path, ["epochs=1", "progress=false"])
    finally:
        holder.kill()
        holder.wait()
    assert [(o.seed, o.status) for o in outcomes] == [(0, "done"), (1, "busy")]
    assert f"process {holder.pid}" in outcomes[1].error
    assert not (held / "failed.json").exists() and not (held / "metrics.json").exists()


def test_a_retry_after_a_failure_before_any_checkpoint_may_change_options(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        run_digits(tmp_path, "epochs=1", "smp.alpha=0.3", method="smp", plugins=[Boom()])
    assert (tmp_path / "config.yaml").exists() and not (tmp_path / "checkpoint").exists()
    m = run_digits(tmp_path, "epochs=1", "smp.alpha=0.4", method="smp", resume=True)
    assert m["config"]["smp"]["alpha"] == 0.4


def test_compare_cli_writes_summary_leaderboard_and_plots(tmp_path, capsys):
    code = main(["compare", "--methods", "ce,smp", "--dataset", "digits", "--seeds", "0", "--output", str(tmp_path),
                 "epochs=2", "progress=false", "noise=symmetric:0.4", "smp.start_epoch=2", "smp.max_changed=null"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^ce\s+0\s+done", out, re.M) and re.search(r"^smp\s+0\s+done", out, re.M)
    assert "| ce | 1 |" in out and (tmp_path / "leaderboard.md").read_text() in out
    assert (tmp_path / "accuracy_vs_time.png").exists() and (tmp_path / "label_curves.png").exists()
    config = (tmp_path / "digits" / "ce" / "seed0" / "config.yaml").read_text()
    assert "start_epoch" not in config  # smp's options reach smp only


# -- export -----------------------------------------------------------------------------------


def test_export_sorts_by_suspicion_over_every_split(tmp_path):
    record = run_digits(tmp_path, "epochs=3", "noise=symmetric:0.4", "smp.start_epoch=2", "smp.max_changed=null",
                        method="smp")
    whole = suspects(tmp_path)
    assert list(whole.columns) == ["split", "index", "noisy_label", "noisy_class", "corrected_label", "corrected_class",
                                   "noise_score", "flagged", "predicted_label"]
    assert whole["split"].value_counts().to_dict() == {"train": 1078, "test": 360, "val": 359}
    table = whole[whole["split"] == "train"]
    assert table["noise_score"].is_monotonic_decreasing
    assert (table["flagged"] == (table["corrected_label"] != table["noisy_label"])).all()
    for split in ("val", "test"):  # scored by the final model: 1 - p(label), most suspect first
        rows = whole[whole["split"] == split]
        assert rows["noise_score"].is_monotonic_decreasing and sorted(rows["index"]) == list(range(len(rows)))
        assert rows["noise_score"].between(0, 1).all()
    test = whole[whole["split"] == "test"]
    assert (test["predicted_label"] == test["noisy_label"]).mean() == pytest.approx(record["test"]["accuracy"])
    assert main(["export", str(tmp_path)]) == 0
    assert pd.read_csv(tmp_path / "suspects.csv")["index"].tolist() == whole["index"].tolist()


def test_export_of_image_files_carries_paths_and_parquet_needs_pyarrow(tmp_path, capsys):
    from fixtures import write_clothing1m

    write_clothing1m(tmp_path / "data")
    run_digits_like = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=1", "batch_size=16",
                       "data.num_workers=0", f"data.root={tmp_path / 'data'}"]
    from noisybench.api import run

    run("ce", "clothing1m", tmp_path / "run", run_digits_like)
    table = suspects(tmp_path / "run")
    assert table["path"].str.endswith(".jpg").all()
    assert table["noisy_class"].isin(["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
                                      "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear"]).all()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert main(["export", str(tmp_path / "run"), "--format", "parquet"]) == 2
        assert "pip install pyarrow" in capsys.readouterr().err
    else:
        assert main(["export", str(tmp_path / "run"), "--format", "parquet"]) == 0
        assert pd.read_parquet(tmp_path / "run" / "suspects.parquet").equals(table)
