"""Meta-Weight-Net and confident learning under two processes, in one torchrun launch (a
launch costs more than either run): mwnet's weights stay with their samples, cleanlab's fold
runs take both processes and the calling run outlives them."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import torch
from conftest import read_metrics
from noisybench_mwnet.weightnet import WeightNet

MWNET = ["epochs=2", "progress=false", "noise=symmetric:0.4", "setting=clean", "batch_size=50",
         "data.epoch_subset=200", "mwnet.weight_lr=1e-9"]  # 4 batches of 50 an epoch: two per process, none drawn twice
CLEANLAB = ["epochs=1", "progress=false", "noise=symmetric:0.4", "cleanlab.folds=2", "cleanlab.fold_epochs=1"]
DRIVER = f"""
import sys
from pathlib import Path
from noisybench.api import run
from noisybench.nested import calling_run_kept
out = Path(sys.argv[1])
with calling_run_kept():  # the first run leaves the process group to the second
    run("mwnet", "digits", out / "mwnet", {MWNET!r})
run("cleanlab", "digits", out / "cleanlab", {CLEANLAB!r})
"""


def test_mwnet_and_cleanlab_under_two_processes(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(driver), str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # mwnet: with V all but frozen, each recorded weight is V(the sample's own last loss); weights
    # written to another sample's index would not be
    record = read_metrics(tmp_path / "mwnet")
    assert record["environment"]["num_processes"] == 2
    torch.manual_seed(record["seed"] * 1_000_003 + zlib.crc32(b"mwnet"))
    net = WeightNet()  # V's initial weights, as the run drew them
    samples = pd.read_csv(tmp_path / "mwnet" / "samples.csv")
    seen = samples["train_loss"].notna().to_numpy()
    with torch.no_grad():
        expected = net(torch.tensor(samples["train_loss"].to_numpy()[seen], dtype=torch.float32)).numpy()
    assert seen.sum() >= 100 and np.allclose(samples["weight"].to_numpy()[seen], expected, atol=1e-4)
    # cleanlab: every sample's noise score is 1 - p(label) of the fold run (both processes) that held it out
    folder = tmp_path / "cleanlab"
    assert read_metrics(folder)["environment"]["num_processes"] == 2
    assert read_metrics(folder / "folds" / "fold1")["environment"]["num_processes"] == 2
    parts = [pd.read_csv(folder / "folds" / f"fold{k}" / "heldout.csv") for k in (0, 1)]
    heldout = pd.concat(parts).set_index("index").sort_index()["p_label"]
    samples = pd.read_csv(folder / "samples.csv")
    assert np.allclose(samples["noise_score"], 1 - heldout.to_numpy(), atol=1e-6)
