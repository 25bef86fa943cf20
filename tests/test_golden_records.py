"""Golden records: what a run writes, compared with what the code wrote before the training
loop was split into its modules (tests/golden/records/, written by ``python
tests/test_golden_records.py``, run with the code the records are to pin).

Two kinds of run, because the suite must pass on any CPU and thread count (AMD or Intel,
1 or 2 threads), where a trained network's floats differ in their last bits:

- ``scripted``: the core's loop, evaluation schedule, best epoch (kept weights tested at
  the end), held-out fold, per-sample tables and record, with every number a model would
  compute set by a plugin instead: training steps return one-hot logits scaled by 1000
  (for the scripted prediction) and a loss of ``epoch``; evaluation returns the same kind of
  logits for a prediction made from the image's pixel sum; the method's per-sample outputs
  are fixed fractions. Every float in its records is then exact on any IEEE machine: a
  pixel sum of multiples of 1/16 below 2**20 is exact in any order, softmax and cross-entropy
  of such logits round to exactly 0, 1 or 1000 (exp(-1000) is 0 in float32), the rest are
  ratios of integer counts and Python arithmetic (the learning rate). So its files are
  compared byte for byte (metrics.json less its timings and environment), as is the same
  run killed after two epochs and resumed. model.json's normalisation (a float32 mean over
  the training images, whose summation order differs between CPUs) is compared to 1e-6.
- a real method (co-teaching: two networks, a test after every epoch, the ``clean``
  setting with a fine-tuning epoch): its floats are the CPU's,
  so only what no float decides is compared: the files written, metrics.json's keys and
  value types, each CSV's columns and dtypes, and its label, index and path columns value
  for value; config.yaml and model.json (normalisation to 1e-6).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from noisybench import hookimpl
from noisybench.run import StepOutput

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CrashAt, run_digits  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "records"
SCRIPTED = ["epochs=3", "noise=symmetric:0.4", "seed=2", "data.cv_folds=3", "data.cv_fold=1", "data.num_workers=0"]
REAL = {  # two networks, a test after every epoch, the clean setting's fine-tuning
    "coteaching_clean": dict(method="coteaching", overrides=["epochs=2", "noise=symmetric:0.4", "seed=2",
                                                             "eval.test=every", "setting=clean", "finetune.epochs=1",
                                                             "data.num_workers=0"]),
}
TIMINGS = ("efficiency", "environment")
EXACT_COLUMNS = ("index", "path", "noisy_label", "true_label", "is_noisy", "corrupt", "split", "label")
NORMALIZATION_TOLERANCE = 1e-6


def one_hot_logits(prediction: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(prediction, classes).float() * 1000.0


class Scripted:
    """Every number a model would give, set by hand (see the module docstring)."""

    OFFSETS = {1: 3, 2: 0, 3: 7}  # the eval prediction's shift per epoch: a val curve that peaks before the end

    @hookimpl
    def noisybench_train_step(self, run, batch):
        wrong = (batch.indices + run.epoch) % 4 == 0
        prediction = torch.where(wrong, (batch.labels + 1) % run.num_classes, batch.labels)
        return StepOutput(loss=torch.tensor(float(run.epoch)), logits=one_hot_logits(prediction, run.num_classes))

    @hookimpl
    def noisybench_eval_logits(self, run, images, logits):
        pixel_sum = torch.round(images.flatten(1).float().sum(dim=1) * 16).long()
        return one_hot_logits((pixel_sum + self.OFFSETS.get(run.epoch, 0)) % run.num_classes, run.num_classes)

    @hookimpl
    def noisybench_sample_outputs(self, run):
        index = torch.arange(run.num_train)
        corrected = torch.where(index % 7 == 0, (run.noisy_labels + run.epoch) % run.num_classes, run.noisy_labels)
        score = (index % 5).float() / 4
        return {"corrected_label": corrected, "noise_score": score, "weight": 1 - score}


def stripped_metrics(path: Path) -> dict:
    """metrics.json less what differs from run to run: timings and the environment."""
    record = json.loads(path.read_text())
    for key in TIMINGS:
        record.pop(key)
    for entry in record["history"]:
        entry.pop("seconds")
    return record


def run_files(folder: Path) -> list[str]:
    """The files of a run folder, less the checkpoint's (its RNG state and timings) and the log."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.parts[len(folder.parts)] != "checkpoint" and p.name != "run.log")


def skeleton(value):
    """Keys and value types of a JSON value; a list of scalars is only a list (a warning more
    or less is a float's decision)."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items()}
    if isinstance(value, list):
        return [skeleton(v) for v in value] if any(isinstance(v, (dict, list)) for v in value) else "list"
    return type(value).__name__


def table_summary(path: Path) -> dict:
    """A CSV's columns, dtypes and, for the columns no float decides, every value."""
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    typed = pd.read_csv(path)
    return {"columns": list(typed.columns), "dtypes": [str(t) for t in typed.dtypes], "rows": len(typed),
            "exact": {c: table[c].tolist() for c in EXACT_COLUMNS if c in table.columns}}


def real_summary(folder: Path) -> dict:
    return {"files": run_files(folder),
            "metrics": skeleton(stripped_metrics(folder / "metrics.json")),
            "tables": {p.name: table_summary(p) for p in sorted(folder.glob("*.csv"))},
            "config.yaml": (folder / "config.yaml").read_text(),
            "model.json": json.loads((folder / "model.json").read_text())}


def scripted_files(folder: Path) -> dict[str, str]:
    """The scripted run's records as compared: text, metrics.json less timings."""
    texts = {name: (folder / name).read_text() for name in run_files(folder)
             if name.endswith((".csv", ".yaml", ".json")) and name != "metrics.json"}
    texts["metrics.json"] = json.dumps(stripped_metrics(folder / "metrics.json"), indent=2) + "\n"
    return texts


def assert_model_cards_match(got: str | dict, expected: str | dict) -> None:
    got = json.loads(got) if isinstance(got, str) else got
    expected = json.loads(expected) if isinstance(expected, str) else expected
    for card in (got, expected):
        card["normalization"] = np.asarray(card["normalization"], dtype=float)
    np.testing.assert_allclose(got.pop("normalization"), expected.pop("normalization"), rtol=NORMALIZATION_TOLERANCE)
    assert got == expected


def assert_scripted_run_matches(folder: Path) -> None:
    expected_folder = GOLDEN / "scripted"
    expected_names = json.loads((expected_folder / "files.json").read_text())
    assert run_files(folder) == expected_names
    got = scripted_files(folder)
    for name, text in got.items():
        expected = (expected_folder / name).read_text()
        if name == "model.json":
            assert_model_cards_match(text, expected)
        else:
            assert text == expected, f"{name} differs from {expected_folder / name}"


def train_scripted(folder: Path, crash_at: int | None = None) -> None:
    if crash_at is None:
        run_digits(folder, *SCRIPTED, plugins=[Scripted()])
        return
    with pytest.raises(KeyboardInterrupt):
        run_digits(folder, *SCRIPTED, plugins=[Scripted(), CrashAt(crash_at)])
    run_digits(folder, resume=True, plugins=[Scripted()])


def test_a_scripted_run_writes_the_golden_records_byte_for_byte(tmp_path):
    train_scripted(tmp_path / "straight")
    record = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert record["best_val"]["epoch"] == 2  # the scripted curve peaks before the end: the kept weights are tested
    assert_scripted_run_matches(tmp_path / "straight")


def test_a_scripted_run_killed_and_resumed_writes_the_same_records(tmp_path):
    train_scripted(tmp_path / "resumed", crash_at=3)
    assert_scripted_run_matches(tmp_path / "resumed")


@pytest.mark.parametrize("name", sorted(REAL))
def test_a_real_method_writes_the_golden_files_columns_and_labels(tmp_path, name):
    run_digits(tmp_path, *REAL[name]["overrides"], method=REAL[name]["method"])
    got = real_summary(tmp_path)
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    assert_model_cards_match(got.pop("model.json"), expected.pop("model.json"))
    for key in expected:
        assert got[key] == expected[key], f"{name}: {key} differs from the golden record"


def write_golden(scratch: Path) -> None:
    """Regenerate tests/golden/records/ with the code importable now."""
    import shutil

    train_scripted(scratch / "scripted")
    target = GOLDEN / "scripted"
    shutil.rmtree(target, ignore_errors=True)
    for name, text in scripted_files(scratch / "scripted").items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    (target / "files.json").write_text(json.dumps(run_files(scratch / "scripted"), indent=1) + "\n")
    for name, spec in REAL.items():
        run_digits(scratch / name, *spec["overrides"], method=spec["method"])
        (GOLDEN / f"{name}.json").write_text(json.dumps(real_summary(scratch / name), indent=1) + "\n")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch_dir:
        write_golden(Path(scratch_dir))
    import noisybench

    print(f"golden records written to {GOLDEN} by the noisybench in {Path(noisybench.__file__).parent}")
