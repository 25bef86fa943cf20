"""The thread policy: threads=auto by the run's inputs, OpenMP's passive wait before torch loads."""

import os
import subprocess
import sys

import pytest
import torch

from noisybench import threads
from conftest import run_digits


def test_auto_is_one_thread_for_small_inputs_and_torchs_default_above():
    default = threads.torch_default()
    assert threads.resolve("auto", 8)[0] == 1
    assert threads.resolve("auto", 63)[0] == 1
    assert threads.resolve("auto", 64)[0] == default
    assert threads.resolve("auto", 224)[0] == default
    assert threads.resolve(None, 8)[0] == default
    assert threads.resolve(3, 8)[0] == 3


def test_a_digits_run_trains_on_one_thread_and_says_so(tmp_path):
    before = torch.get_num_threads()
    try:
        record = run_digits(tmp_path / "run", "epochs=1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert record["choices"]["threads"] == 1 and record["choices"]["threads_why"].startswith("auto")
    assert "1 CPU thread(s) (auto" in (tmp_path / "run" / "run.log").read_text()
    assert "threads" not in record["experiment"]


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_noisybench_prefers_passive_wait_unless_the_user_chose(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, sys, noisybench; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected, "False"]  # set before anything imported torch


def test_a_process_that_imported_torch_first_keeps_its_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    threads.prefer_passive_wait()  # torch is imported in this process: too late to matter, so left alone
    assert "OMP_WAIT_POLICY" not in os.environ
