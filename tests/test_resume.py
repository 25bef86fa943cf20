"""Resume integrity: a resumed run is the experiment it started as, or it is refused;
one run per folder; nothing a run computed is lost when it is killed."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import (CrashAt, CrashMidEpoch, Payload, comparable, hold_lock, noisybench_subprocess, resumed_like_straight,
                      run_digits)
from fixtures import write_jpeg, write_lines
from noisybench.cli import main
from noisybench.errors import ConfigError
from noisybench.lock import LOCK_FILE

DIGITS = ["run", "--method", "smp", "--dataset", "digits", "progress=false", "noise=symmetric:0.4", "epochs=2"]


def folder_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def finished_smp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished") / "run"
    assert main([*DIGITS, "--output", str(folder)]) == 0
    return folder


@pytest.mark.parametrize("change", ["seed=1", "noise=symmetric:0.2", "smp.alpha=0.3", "model.drop_rate=0.1",
                                    "optimizer.lr=0.01", "epochs=1"])
def test_resume_with_another_experiment_is_refused(finished_smp, change, capsys):
    before = folder_files(finished_smp)
    assert main(["run", "--output", str(finished_smp), "--resume", change]) == 2
    err = capsys.readouterr().err
    key = change.split("=")[0]
    assert f"cannot resume the run in {finished_smp}" in err and key in err
    assert folder_files(finished_smp) == before  # config.yaml and metrics.json untouched


def test_resume_of_a_killed_run_with_another_seed_is_refused(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path, "epochs=3", plugins=[CrashAt(2)])
    assert main(["run", "--output", str(tmp_path), "--resume", "seed=7"]) == 2
    assert "seed (0 -> 7)" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


def test_output_keys_may_change_on_resume(finished_smp):
    record = json.loads((finished_smp / "metrics.json").read_text())
    assert main(["run", "--output", str(finished_smp), "--resume", "progress=true", "eval_batch_size=64"]) == 0
    assert json.loads((finished_smp / "metrics.json").read_text()) == record


def test_a_finished_run_resumed_with_more_epochs_continues(tmp_path):
    overrides = ("noise=symmetric:0.3", "lr_schedule.step_every=1", "eval.test=every")  # epoch 2 was tested as the last
    straight = run_digits(tmp_path / "straight", "epochs=3", *overrides)
    short = run_digits(tmp_path / "extended", "epochs=2", *overrides)
    assert [h["epoch"] for h in short["history"]] == [1, 2]
    extended = run_digits(tmp_path / "extended", "epochs=3", resume=True)
    assert [h["epoch"] for h in extended["history"]] == [1, 2, 3]
    # the decay after epoch 2 that a 2-epoch schedule lacks is applied: the same run as a straight one
    assert [h["lr"] for h in extended["history"]] == pytest.approx([0.05, 0.005, 0.0005])
    assert comparable(extended) == comparable(straight)
    assert extended["config"]["epochs"] == 3 and extended["fingerprint"] != short["fingerprint"]


def test_train_loss_and_sample_columns_survive_a_kill_after_the_last_checkpoint(tmp_path):
    run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", method="smp")
    samples = pd.read_csv(tmp_path / "samples.csv")
    record = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").unlink()  # killed while writing the record
    (tmp_path / "samples.csv").unlink()
    resumed = run_digits(tmp_path, resume=True, method="smp")
    assert samples["train_loss"].notna().all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "samples.csv"), samples)
    assert comparable(resumed) == comparable(record)


@pytest.mark.parametrize("method", ["smp", "sinet"])
def test_train_pass_runs_killed_mid_epoch_resume_exactly(tmp_path, method):
    """The correction at the start of epoch 3 uses the features harvested during epoch 2,
    which must come back from the checkpoint rather than from an eval pass."""
    resumed_like_straight(tmp_path, method, "epochs=3", "noise=symmetric:0.4", f"{method}.start_epoch=2",
                          f"{method}.feature_source=train_pass", crash=CrashMidEpoch(3))


def test_changed_data_is_refused_on_resume(tmp_path, capsys):
    rows = ["path,label"] + [f"{i}.jpg,{'ab'[i % 2]}" for i in range(20)]
    for i in range(20):
        write_jpeg(tmp_path / "data" / f"{i}.jpg", i % 2)
    write_lines(tmp_path / "data" / "m.csv", rows)
    args = ["run", "--method", "ce", "--dataset", "csv", "--output", str(tmp_path / "run"), "progress=false",
            f"data.root={tmp_path / 'data' / 'm.csv'}", "model.name=small_cnn", "data.image_size=16", "epochs=1",
            "data.num_workers=0"]
    assert main(args) == 0
    write_lines(tmp_path / "data" / "m.csv", rows[:1] + ["0.jpg,b"] + rows[2:])  # one label changed
    assert main(["run", "--output", str(tmp_path / "run"), "--resume", "epochs=2"]) == 2
    assert "data.identity" in capsys.readouterr().err


def test_a_held_folder_is_refused_naming_the_holder(tmp_path, capsys):
    holder = hold_lock(tmp_path)
    try:
        assert main([*DIGITS, "--output", str(tmp_path)]) == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
        assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "checkpoint.tmp").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: its lock file stays, the OS lock died with it): the folder is free
    assert main([*DIGITS, "--output", str(tmp_path), "epochs=1"]) == 0
    assert (tmp_path / "metrics.json").exists() and not (tmp_path / LOCK_FILE).exists()


def test_two_runs_started_on_one_folder_one_wins(tmp_path):
    args = [*DIGITS[:-1], "epochs=3", "--output", str(tmp_path)]
    first = subprocess.Popen([sys.executable, "-m", "noisybench", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    second = subprocess.run([sys.executable, "-m", "noisybench", *args], capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    out, err = first.communicate(timeout=300)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (out, err, second.stderr)
    loser = second if second.returncode == 2 else first
    assert "in use by process" in (loser.stderr if loser is second else err) or "already holds a run" in (
        loser.stderr if loser is second else err)


def test_resume_under_another_process_count_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_digits(out, "epochs=2", plugins=[CrashAt(2)])
    proc = noisybench_subprocess("run", "--output", str(out), "--resume", processes=2)
    assert proc.returncode != 0
    assert "num_processes (1 -> 2)" in proc.stderr
    assert not (out / "metrics.json").exists()


def test_a_malicious_pickle_in_a_checkpoint_is_never_run(tmp_path):
    import pickle

    import torch

    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path / "run", "epochs=2", method="smp", plugins=[CrashAt(2)])
    checkpoint = tmp_path / "run" / "checkpoint"
    marker = tmp_path / "pwned"
    # every name a pickle could hide under: Accelerate's own files, torch.save files, any .pkl/.bin/.pt
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin",
                 "pytorch_model.bin", "scheduler.bin", "sampler.bin", "state.pt", "anything.pkl"):
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    torch.save({"x": Payload(marker)}, checkpoint / "model.pt")
    planted = {p.name: p.read_bytes() for p in checkpoint.iterdir() if p.suffix not in (".json", ".safetensors")}
    # resuming would mean removing files noisybench did not write: refused before anything is read or trained
    with pytest.raises(ConfigError, match="checkpoint: not a checkpoint this noisybench wrote .*custom_checkpoint_0"):
        run_digits(tmp_path / "run", resume=True, method="smp")
    assert not marker.exists()
    assert {name: (checkpoint / name).read_bytes() for name in planted} == planted  # every planted file kept
    for name in planted:
        (checkpoint / name).unlink()
    resumed = run_digits(tmp_path / "run", resume=True, method="smp")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and not marker.exists()
    from noisybench.evaluate import evaluate

    assert evaluate(tmp_path / "run")["matches_record"] and not marker.exists()
    assert {p.suffix for p in checkpoint.iterdir()} == {".json", ".safetensors"}  # what the run itself writes


def test_a_checkpoint_of_pickles_is_refused_not_read(tmp_path, capsys):
    import pickle

    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path / "run", "epochs=2", plugins=[CrashAt(2)])
    checkpoint = tmp_path / "run" / "checkpoint"
    for path in checkpoint.glob("state.*"):
        path.unlink()
    (checkpoint / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    assert main(["run", "--output", str(tmp_path / "run"), "--resume"]) == 2
    assert "not a checkpoint this noisybench wrote" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_from_before_a_key_existed_resumes_as_the_value_it_had(tmp_path):
    """A run checkpointed before eval.every existed evaluated val every epoch: it resumes as
    eval.every=1, and only as that. An lsw run from before meta_gradient used higher."""
    from noisybench.identity import resume_refusal

    with pytest.raises(KeyboardInterrupt):
        run_digits(tmp_path, "epochs=3", plugins=[CrashAt(3)])
    state_file = tmp_path / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["progress"]["experiment"]["eval.every"]  # as an older noisybench wrote it
    state_file.write_text(json.dumps(state))
    assert run_digits(tmp_path, "epochs=3", resume=True)["history"][-1]["epoch"] == 3
    old = {"method": "lsw", "lsw.start_epoch": 3}
    assert resume_refusal(old, {**old, "lsw.meta_gradient": "higher", "eval.every": 1}, tmp_path) is None
    assert "lsw.meta_gradient ('higher' -> 'jvp')" in resume_refusal(old, {**old, "lsw.meta_gradient": "jvp"}, tmp_path)
    assert "eval.every" in resume_refusal(old, {**old, "eval.every": 2}, tmp_path)
