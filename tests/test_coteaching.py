"""Co-teaching (Han et al. 2018) and the API it needs: a further network, evaluation by a hook."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess, resumed_like_straight, run_digits
from noisybench_coteaching import cross_select, keep_rate, noisybench_check_options

from noisybench.errors import ConfigError


def test_keep_rate_by_hand():
    # Algorithm 1, tau = 0.4, T_k = 10: epoch T trains with R(T - 1) = 1 - min((T - 1) * 0.04, 0.4)
    assert [keep_rate(epoch, 0.4, 10, "algorithm") for epoch in (1, 2, 6, 11, 12, 30)] == pytest.approx(
        [1.0, 0.96, 0.8, 0.6, 0.6, 0.6])


def test_keep_rate_of_the_authors_main_py_by_hand():
    """main.py: rate_schedule = ones(n_epoch)·τ; rate_schedule[:T_k] = linspace(0, τ**1, T_k); the
    loop trains epoch = 1..n_epoch−1 with rate_schedule[epoch]. τ = 0.45, T_k = 10: steps of
    0.05, so 0.95 is kept at epoch 1 and 0.55 from epoch 9."""
    tau, t_k = 0.45, 10
    rate_schedule = np.ones(200) * tau
    rate_schedule[:t_k] = np.linspace(0, tau ** 1, t_k)
    epochs = range(1, 200)
    assert [keep_rate(e, tau, t_k) for e in epochs] == pytest.approx([1 - rate_schedule[e] for e in epochs])
    assert [keep_rate(e, tau, t_k) for e in (1, 2, 8, 9, 10, 11)] == pytest.approx([0.95, 0.9, 0.6, 0.55, 0.55, 0.55])
    assert keep_rate(1, 0.2, 1) == pytest.approx(0.8)  # linspace(0, τ, 1) = [0]: τ from epoch 1


def test_each_network_trains_on_its_peers_small_loss_samples():
    loss_main = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7])
    loss_peer = torch.tensor([0.8, 0.2, 0.4, 0.6, 0.1])
    for_main, for_peer = cross_select(loss_main, loss_peer, keep=0.6)  # floor(0.6 * 5) = 3 each
    assert sorted(for_main.tolist()) == [1, 2, 4]  # the peer's three smallest losses
    assert sorted(for_peer.tolist()) == [0, 2, 3]  # the main network's three smallest
    assert len(cross_select(loss_main, loss_peer, keep=0.1)[0]) == 1  # never an empty batch


def test_forget_rate_auto_is_the_synthetic_noise_rate():
    defaults = {"num_gradual": 10, "schedule": "code", "evaluate": "main"}
    options = {"forget_rate": "auto", **defaults}
    noisybench_check_options(options=options, config={"noise": "asymmetric:0.3"})
    assert options["forget_rate"] == 0.3
    with pytest.raises(ConfigError, match="needs synthetic noise"):
        noisybench_check_options(options={"forget_rate": "auto", **defaults}, config={"noise": "none"})
    with pytest.raises(ConfigError, match="coteaching.num_gradual"):
        noisybench_check_options(options={"forget_rate": 0.2, **defaults, "num_gradual": 0}, config={"noise": "none"})
    with pytest.raises(ConfigError, match="coteaching.schedule"):
        noisybench_check_options(options={"forget_rate": 0.2, **defaults, "schedule": "paper"}, config={"noise": "none"})


def test_two_networks_and_an_ensemble_evaluation(tmp_path):
    """The record counts both networks; with evaluate=mean its test accuracy is the
    mean-softmax ensemble's, as `evaluate` (which rebuilds both from the checkpoint) also finds."""
    from noisybench.evaluate import score_split, trained_run

    record = run_digits(tmp_path, "epochs=4", "noise=symmetric:0.4", "coteaching.evaluate=mean", method="coteaching")
    single = run_digits(tmp_path / "ce", "epochs=1")
    assert record["efficiency"]["parameters"] == 2 * single["efficiency"]["parameters"]
    assert record["config"]["coteaching"]["forget_rate"] == 0.4
    with trained_run(tmp_path) as trainer:
        assert score_split(trainer, "test")["accuracy"] == record["test"]["accuracy"]
        images = torch.stack([trainer.splits.test[i][0] for i in range(len(trainer.splits.test))])
        labels = torch.as_tensor([int(trainer.splits.test[i][1]) for i in range(len(trainer.splits.test))])
        main, peer = trainer.run.model.eval(), trainer.run.networks["peer"].model.eval()
        with torch.no_grad():
            mean = (main(images)[0].softmax(1) + peer(images)[0].softmax(1)) / 2
            alone = main(images)[0].argmax(1)
        assert (mean.argmax(1) == labels).float().mean().item() == pytest.approx(record["test"]["accuracy"])
        assert not torch.equal(alone, mean.argmax(1))  # the ensemble is not the main network alone
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert samples["weight"].between(0, 1).all()
    assert samples.loc[samples["is_noisy"] == 1, "weight"].mean() < samples.loc[samples["is_noisy"] == 0, "weight"].mean()


def test_coteaching_resumes_both_networks_exactly(tmp_path):
    resumed_like_straight(tmp_path, "coteaching", "epochs=4", "noise=symmetric:0.4", "coteaching.num_gradual=2",
                          crash_at=3)


def test_coteaching_under_two_processes(tmp_path):
    proc = noisybench_subprocess("run", "--method", "coteaching", "--dataset", "digits", "--output", str(tmp_path),
                                 "epochs=2", "noise=symmetric:0.4", "progress=false", processes=2)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["experiment"]["num_processes"] == 2 and (tmp_path / "checkpoint" / "network_peer.safetensors").is_file()
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert (samples["weight"] > 0).mean() > 0.9  # selections of both processes' batches reach the main one


def test_predict_evaluates_as_the_run_did(tmp_path):
    """predict rebuilds both networks (best/ holds them) and uses the method's ensemble."""
    from fixtures import write_clothing1m

    from noisybench.api import run
    from noisybench.predict import predict

    write_clothing1m(tmp_path / "data")
    record = run("coteaching", "clothing1m", tmp_path / "run",
                 ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=3", "batch_size=16",
                  "data.num_workers=0", f"data.root={tmp_path / 'data'}", "coteaching.forget_rate=0.2",
                  "coteaching.evaluate=mean"])
    assert (tmp_path / "run" / "best" / "network_peer.safetensors").is_file()
    from noisybench.datasets.clothing1m import normalize_key

    keys = [normalize_key(k) for k in (tmp_path / "data" / "clean_test_key_list.txt").read_text().split()]
    labels = {normalize_key(k): int(v) for k, v in
              (line.split() for line in (tmp_path / "data" / "clean_label_kv.txt").read_text().splitlines())}
    pd.DataFrame({"path": [str(tmp_path / "data" / "images" / k) for k in keys],
                  "label": [labels[k] for k in keys]}).to_csv(tmp_path / "test.csv", index=False)
    last = predict(tmp_path / "run", tmp_path / "test.csv", "last")
    assert (last["predicted_label"] == last["label"]).mean() == pytest.approx(record["test"]["accuracy"])
