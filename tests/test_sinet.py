"""SINet: the equations of §3 on cases computed by hand, the side information, and whole runs."""

from __future__ import annotations

import json
import math

import noisybench.run
import noisybench_sinet
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import noisybench_subprocess, read_metrics, resumed_like_straight, run_digits
from fixtures import CLOTHING_NAMES, FOOD_CLASSES, write_clothing1m, write_food101n
from noisybench_sinet.graph import (
    parse_graph_spec,
    path_lengths,
    path_similarity,
    relation_graph,
)
from noisybench_sinet.regenerate import differences, graph_from_yaml
from noisybench_sinet.side_info import (
    SHIPPED,
    build_matrices,
    load_graph_file,
    load_side_info,
    relation_matrices,
    shipped_files,
)
from noisybench_sinet.weighting import (
    consistency,
    initial_prototypes,
    per_class_cross_entropy,
    prototype_distances,
    sample_weights,
    visual_prototypes,
    visual_similarity,
    weighted_cross_entropy,
)
from noisybench_sinet.wordnet import WordNet, find_wordnet_dir

from noisybench.api import run
from noisybench.errors import ConfigError

# ---- eq. 2-3: the class relation graph ---------------------------------------------------


@pytest.mark.parametrize("dataset", list(SHIPPED))
def test_shipped_graphs_are_symmetric_with_unit_diagonal(dataset):
    _, graph_path = shipped_files(dataset)
    graph = load_graph_file(graph_path)
    for part in ("names", "descriptions", "hierarchy"):
        matrix = np.asarray(graph[part])
        assert matrix.shape == (len(graph["classes"]),) * 2
        assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
        off = matrix[~np.eye(len(matrix), dtype=bool)]
        assert (off < 1.0).all()  # no two classes collapse onto one node
    s_t = relation_graph({p: np.asarray(graph[p]) for p in ("names", "descriptions", "hierarchy")},
                         "descriptions+hierarchy")
    assert np.allclose(np.diag(s_t), 2.0) and np.allclose(s_t, s_t.T)


def test_graph_spec_sums_the_named_parts():
    a, b, c = np.eye(2), np.full((2, 2), 0.5), np.full((2, 2), 0.25)
    parts = {"names": a, "descriptions": b, "hierarchy": c}
    assert np.allclose(relation_graph(parts, "names+hierarchy"), a + c)
    assert np.allclose(relation_graph(parts, "hierarchy"), c)
    for bad in ("", "names+names", "wordnet", "names+bogus"):
        with pytest.raises(ValueError):
            parse_graph_spec(bad)


def test_path_similarity_of_a_tree_by_hand(tmp_path):
    """A, B under X; C under Y; X, Y under root: d(A,B) = 2, d(A,C) = 4, D unconnected."""
    side = tmp_path / "side.yaml"
    side.write_text("classes:\n  A: {parent: X}\n  B: {parent: X}\n  C: {parent: Y}\n  D: {parent: Z}\n"
                    "hierarchy:\n  X: root\n  Y: root\n")
    matrices = build_matrices(load_side_info(side), ["A", "B", "C", "D"], ["hierarchy"])
    expected = np.array([[1, 1 / 3, 1 / 5, 0], [1 / 3, 1, 1 / 5, 0], [1 / 5, 1 / 5, 1, 0], [0, 0, 0, 1]])
    assert np.allclose(matrices["hierarchy"], expected)
    assert np.allclose(path_similarity(path_lengths([{"a": 0, "r": 2}, {"b": 0, "r": 1}])), [[1, 0.25], [0.25, 1]])


def test_wordnet_links_by_synset_and_by_parent(tmp_path):
    """T-shirt (jersey.n.03) is a shirt: one step. A class whose parent is shirt.n.01 sits one
    step below shirt, so two steps from T-shirt."""
    side = tmp_path / "side.yaml"
    side.write_text("classes:\n  tee: {synset: tee_shirt.n.01}\n  shirt: {synset: n04197391}\n"
                    "  polo: {parent: tops}\nhierarchy:\n  tops: shirt.n.01\n")
    h = build_matrices(load_side_info(side), ["tee", "shirt", "polo"], ["hierarchy"])["hierarchy"]
    assert np.allclose(h, [[1, 1 / 2, 1 / 4], [1 / 2, 1, 1 / 3], [1 / 4, 1 / 3, 1]])


def test_wordnet_reader_reads_crlf_files(tmp_path):
    lines = ["  1 licence header line",
             "00000001 03 n 01 entity 0 000 | that which exists",
             "00000002 03 n 01 garment 0 001 @ 00000001 n 0000 | an article of clothing",
             "00000003 03 n 02 shirt 0 tee 0 002 @ 00000002 n 0000 ~ 00000001 n 0000 | worn on the upper body",
             "00000004 03 n 01 robot 0 001 @i 00000001 n 0000 | an instance"]
    (tmp_path / "data.noun").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    (tmp_path / "index.noun").write_bytes(b"shirt n 1 1 @ 1 0 00000003\r\ntee n 1 1 @ 1 0 00000003\r\n"
                                          b"robot n 1 1 @ 1 0 00000004\r\n")
    net = WordNet.load(find_wordnet_dir(str(tmp_path)))
    assert net.resolve("tee.n.01") == net.resolve("n00000003") == "n00000003"
    assert net.ancestors("n00000003") == {"n00000003": 0, "n00000002": 1, "n00000001": 2}  # ~ is no hypernym
    assert net.ancestors("n00000004") == {"n00000004": 0, "n00000001": 1}  # instance hypernyms count
    assert net.synsets["n00000003"].gloss == "worn on the upper body"
    with pytest.raises(ConfigError, match="shirt.n.02"):
        net.resolve("shirt.n.02")
    with pytest.raises(ConfigError, match="no data.noun"):
        find_wordnet_dir(str(tmp_path / "elsewhere"))


@pytest.mark.parametrize("dataset", list(SHIPPED))
def test_shipped_matrices_equal_what_regeneration_produces(dataset):
    yaml_path, graph_path = shipped_files(dataset)
    fresh = graph_from_yaml(yaml_path)  # the real sentence model and WordNet 3.0
    assert differences(json.loads(graph_path.read_text()), fresh) == []
    assert fresh["classes"] == list(load_side_info(yaml_path).classes)


def test_shipped_side_information_covers_the_datasets():
    graphs = {d: load_graph_file(shipped_files(d)[1])["classes"] for d in SHIPPED}
    assert graphs["clothing1m"] == CLOTHING_NAMES
    assert len(graphs["food101n"]) == 101 and set(FOOD_CLASSES) <= set(graphs["food101n"])
    assert graphs["digits"] == [str(d) for d in range(10)]
    subset = relation_matrices("food101n", FOOD_CLASSES, None, ["hierarchy"])["hierarchy"]
    assert subset.shape == (3, 3) and np.allclose(np.diag(subset), 1)


# ---- missing or bad side information --------------------------------------------------


def test_missing_classes_are_named(tmp_path):
    side = tmp_path / "side.yaml"
    side.write_text("classes:\n" + "".join(f"  '{d}': {{parent: digit}}\n" for d in range(8)))
    with pytest.raises(ConfigError, match=r"side.yaml: no side information for class\(es\) 8, 9"):
        relation_matrices("digits", [str(d) for d in range(10)], str(side), ["hierarchy"])
    with pytest.raises(ConfigError, match=r"graph part 'descriptions' needs description or synset for class\(es\) 0, 1"):
        relation_matrices("digits", ["0", "1"], str(side), ["descriptions"])
    with pytest.raises(ConfigError, match="no side information ships for dataset 'cifar10'.*sinet.side_info"):
        relation_matrices("cifar10", ["cat"], None, ["hierarchy"])
    with pytest.raises(ConfigError, match=r"no side information for class\(es\) pizza_slice"):
        relation_matrices("food101n", ["pizza", "pizza_slice"], None, ["hierarchy"])


def test_bad_side_information_files_name_the_fault(tmp_path):
    cases = {"classes:\n  a: {colour: red}\n": "class 'a': unknown key",
             "labels: {}\n": "expected a mapping 'classes",
             "classes:\n  a: {parent: x}\nhierarchy:\n  x: y\n  y: x\n": "loops at node 'x'",
             "classes: [a\n": "not valid YAML"}
    for number, (text, message) in enumerate(cases.items()):
        side = tmp_path / f"side{number}.yaml"
        side.write_text(text)
        with pytest.raises(ConfigError, match=message):
            relation_matrices("digits", ["a"], str(side), ["hierarchy"])
    with pytest.raises(ConfigError, match="not found"):
        load_side_info(tmp_path / "absent.yaml")


# ---- eq. 4: consistency of visual and semantic patterns --------------------------------


def test_consistency_by_hand():
    s_t = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    s_v = torch.tensor([[0.9, 0.1]])
    a = [math.exp(2) / (math.exp(2) + math.exp(1)), math.exp(1) / (math.exp(2) + math.exp(1))]
    b = [math.exp(0.9) / (math.exp(0.9) + math.exp(0.1)), math.exp(0.1) / (math.exp(0.9) + math.exp(0.1))]
    kl = sum(x * math.log(x / y) for x, y in zip(a, b))
    p = consistency(s_t, s_v, torch.tensor([0]), "softmax", epsilon=0.001, gamma=2.0)
    assert p.item() == pytest.approx(1 / (kl + 0.001) ** 2, rel=1e-5)
    # psi = l2: the generalised KL sum a log(a/b) - a + b of the L2-normalised vectors
    a2, b2 = np.array([2.0, 1.0]) / math.sqrt(5), np.array([0.9, 0.1]) / math.sqrt(0.82)
    generalised = float(np.sum(a2 * np.log(a2 / b2) - a2 + b2))
    p2 = consistency(s_t, s_v, torch.tensor([0]), "l2", epsilon=0.001, gamma=1.0)
    assert p2.item() == pytest.approx(1 / (generalised + 0.001), rel=1e-5)


@pytest.mark.parametrize("psi", ["softmax", "l2"])
def test_matching_semantic_pattern_gets_higher_consistency(psi):
    """Class 0 is semantically close to class 1 and far from 2: an image of class 0 that
    looks like class 1 (and not 2) is more consistent than one that looks like class 2."""
    s_t = torch.tensor([[2.0, 1.5, 0.2], [1.5, 2.0, 0.2], [0.2, 0.2, 2.0]])
    s_v = torch.tensor([[0.9, 0.7, 0.0], [0.9, 0.0, 0.7]])
    p = consistency(s_t, s_v, torch.tensor([0, 0]), psi)
    assert p[0] > 2 * p[1]


def test_initial_prototypes_average_the_most_confident():
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 1])
    confidence = torch.tensor([0.9, 0.8, 0.1, 0.5])
    protos = initial_prototypes(features, confidence, labels, 3, top_k=2)
    assert torch.allclose(protos, torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]]))  # normalised, then averaged


# ---- eq. 5: visual prototypes ------------------------------------------------------------


def test_visual_prototype_is_the_consistency_weighted_mean():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])  # normalised: (1,0), (0,1), (1,1)/sqrt2
    labels = torch.tensor([0, 0, 1])
    p = torch.tensor([3.0, 1.0, 5.0])
    v = visual_prototypes(features, labels, p, 3)
    mean = torch.tensor([0.75, 0.25])
    assert torch.allclose(v[0], mean / mean.norm())
    assert torch.allclose(v[1], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    assert torch.equal(v[2], torch.zeros(2))  # no sample labelled 2
    constant = visual_prototypes(features, labels, p, 3, weighting="constant")
    assert torch.allclose(constant[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    top1 = visual_prototypes(features, labels, p, 3, top_k=1)
    assert torch.allclose(top1[0], torch.tensor([1.0, 0.0]))


# ---- eq. 6: sample weights ----------------------------------------------------------------


def test_weights_by_hand_and_zero_beyond_alpha():
    d = torch.tensor([0.0, 0.2, 0.7, 1.2, 1.5, 2.0])
    w = sample_weights(d, alpha=1.2, beta=1.5)
    assert torch.allclose(w, torch.tensor([1.2 ** 1.5, 1.0, 0.5 ** 1.5, 0.0, 0.0, 0.0]))
    assert torch.allclose(sample_weights(torch.tensor([0.5]), alpha=1.0, beta=2.0), torch.tensor([0.25]))


def test_distances_use_normalised_features():
    d = prototype_distances(torch.tensor([[3.0, 4.0], [-2.0, 0.0]]), torch.tensor([[1.0, 0.0]]), chunk=1)
    assert torch.allclose(d.flatten(), torch.tensor([math.sqrt(0.16 + 0.64), 2.0]))


# ---- eq. 1 and eq. 7: the losses ----------------------------------------------------------


def refresh_by_definition(features, labels, p, initial, num_classes):
    """s_v, eq. 5 and the distances written out in float64 on a normalised copy of the features."""
    g = torch.nn.functional.normalize(features.double(), dim=1)
    s_v = g @ torch.nn.functional.normalize(initial.double(), dim=1).T
    prototypes = torch.zeros(num_classes, g.shape[1], dtype=torch.float64)
    for c in range(num_classes):
        members = labels == c
        if members.any():
            prototypes[c] = (g[members] * p.double()[members, None]).sum(0) / p.double()[members].sum()
    prototypes = torch.nn.functional.normalize(prototypes, dim=1)
    return s_v, prototypes, torch.cdist(g, prototypes)


@pytest.mark.parametrize("chunk", [5, 4096])
def test_chunked_refresh_equals_the_definitions_on_random_data(chunk):
    generator = torch.Generator().manual_seed(1)
    features = torch.rand(40, 12, generator=generator) * torch.rand(40, 1, generator=generator) * 5
    features[3] = 0.0  # an all-zero feature stays at distance |v_c| = 1 from every prototype
    labels = torch.randint(0, 4, (40,), generator=generator)  # classes 4 and 5 have no samples
    p = torch.rand(40, generator=generator) + 0.1
    initial = torch.randn(6, 12, generator=generator)
    s_v, prototypes, distances = refresh_by_definition(features, labels, p, initial, 6)
    assert torch.allclose(visual_similarity(features, initial, chunk=chunk).double(), s_v, atol=1e-5)
    fast = visual_prototypes(features, labels, p, 6, chunk=chunk)
    assert torch.allclose(fast.double(), prototypes, atol=1e-5) and not fast[4:].any()
    assert torch.allclose(prototype_distances(features, fast, chunk=chunk).double(), distances, atol=1e-5)


def test_weighted_losses_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ce = [math.log(1 + math.exp(-2)), math.log(1 + math.e)]  # both labelled 0
    loss = weighted_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([0.5, 2.0]))
    assert loss.item() == pytest.approx((0.5 * ce[0] + 2.0 * ce[1]) / 2, rel=1e-6)
    log_p = [[-math.log(1 + math.exp(-2)), -math.log(1 + math.exp(2))], [-math.log(1 + math.e), -math.log(1 + math.exp(-1))]]
    w = [[0.5, 0.25], [0.0, 1.0]]
    by_hand = -sum(w[i][c] * log_p[i][c] for i in range(2) for c in range(2)) / 2
    assert per_class_cross_entropy(logits, torch.tensor(w)).item() == pytest.approx(by_hand, rel=1e-6)


# ---- whole runs ---------------------------------------------------------------------------


def test_sinet_weights_detect_noise_on_digits(tmp_path):
    m = run_digits(tmp_path, "epochs=4", "noise=symmetric:0.4", "sinet.start_epoch=2", method="sinet")
    assert m["detection"]["auc"] > 0.9
    samples = pd.read_csv(tmp_path / "samples.csv")
    noisy, clean = samples.loc[samples.is_noisy == 1, "weight"], samples.loc[samples.is_noisy == 0, "weight"]
    assert noisy.mean() < clean.mean() / 2
    assert samples["weight"].between(0, 1.2 ** 1.5).all()
    assert np.allclose(samples["weight"], np.clip(1.2 - samples["prototype_distance"], 0, None) ** 1.5, atol=1e-5)
    history = m["history"]
    assert history[0].get("sinet_mean_weight") is None and history[1]["sinet_mean_weight"] > 0  # warm-up, then weights
    phases = m["efficiency"]["phase_seconds"]
    assert phases["prototypes"] > 0 and phases["features"] > 0
    assert (tmp_path / "weight_histograms.png").stat().st_size > 1000


def test_two_processes_weight_their_own_samples(tmp_path):
    out = tmp_path / "ddp"
    proc = noisybench_subprocess("run", "--method", "sinet", "--dataset", "digits", "--output", str(out), "epochs=3",
                                 "progress=false", "noise=symmetric:0.4", "sinet.start_epoch=2", "batch_size=50",
                                 processes=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = read_metrics(out)
    assert m["environment"]["num_processes"] == 2
    assert m["detection"]["auc"] > 0.9  # weights attached to the wrong samples would score ~0.5


def recording_prototype_sources(monkeypatch) -> list[int]:
    """How many samples each prototype building saw."""
    seen = []
    original = noisybench_sinet.initial_prototypes

    def recording(features, *args, **kwargs):
        seen.append(len(features))
        return original(features, *args, **kwargs)

    monkeypatch.setattr(noisybench_sinet, "initial_prototypes", recording)
    return seen


def test_verify_builds_prototypes_from_the_trusted_subset(tmp_path, monkeypatch):
    seen = recording_prototype_sources(monkeypatch)
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "setting=verify", "sinet.start_epoch=2",
                   method="sinet")
    assert seen == [m["data"]["trusted"]] and 0 < seen[0] < m["num_train"]


def test_clean_builds_prototypes_from_the_clean_set_and_fine_tunes(tmp_path, monkeypatch):
    seen = recording_prototype_sources(monkeypatch)
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "setting=clean", "sinet.start_epoch=2",
                   "finetune.epochs=null", method="sinet")
    assert seen == [m["data"]["clean"]]
    assert [h["stage"] for h in m["history"]] == ["train"] * 2 + ["finetune"] * 5


def test_real_datasets_use_their_shipped_side_information(tmp_path, monkeypatch):
    """Clothing1M in its paper setting (verify) and Food-101N (3 of its 101 classes in the
    fixture): the shipped graphs, in each dataset's class order."""
    small = ["progress=false", "model.name=small_cnn", "data.image_size=16", "epochs=2", "batch_size=16",
             "data.num_workers=0", "sinet.start_epoch=2"]
    graphs = []
    original = noisybench_sinet.relation_graph
    monkeypatch.setattr(noisybench_sinet, "relation_graph", lambda m, spec: graphs.append(m) or original(m, spec))
    write_clothing1m(tmp_path / "c")
    m = run("sinet", "clothing1m", tmp_path / "c_run", [*small, f"data.root={tmp_path / 'c'}", "setting=verify"])
    assert m["class_names"] == CLOTHING_NAMES and "weight" in pd.read_csv(tmp_path / "c_run" / "samples.csv")
    shipped = load_graph_file(shipped_files("clothing1m")[1])
    assert np.allclose(graphs[0]["hierarchy"], shipped["hierarchy"])
    write_food101n(tmp_path / "n", tmp_path / "f")
    run("sinet", "food101n", tmp_path / "f_run", [*small, f"data.root={tmp_path / 'n'}", f"data.food101_root={tmp_path / 'f'}"])
    food = load_graph_file(shipped_files("food101n")[1])
    at = [food["classes"].index(name) for name in FOOD_CLASSES]
    assert np.allclose(graphs[1]["descriptions"], np.asarray(food["descriptions"])[np.ix_(at, at)])


@pytest.mark.parametrize("source, passes", [("eval_pass", [2, 3]), ("train_pass", [])])
def test_feature_passes_per_refresh(tmp_path, monkeypatch, source, passes):
    """``train_pass`` builds the weights from the previous epoch's training forward passes:
    no extra pass over the training set."""
    seen = []
    original = noisybench.run.Run.predict

    def counted(self, *args, **kwargs):
        seen.append(self.epoch)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(noisybench.run.Run, "predict", counted)
    m = run_digits(tmp_path, "epochs=3", "noise=symmetric:0.4", "sinet.start_epoch=2", f"sinet.feature_source={source}",
                   method="sinet")
    assert seen == passes
    assert m["detection"]["auc"] > 0.9


def test_ablations_run_from_config(tmp_path):
    m = run_digits(tmp_path, "epochs=3", "noise=asymmetric:0.4", "sinet.start_epoch=2", "sinet.graph=names+hierarchy",
                   "sinet.prototype_weighting=constant", "sinet.prototype_top_k=20", "sinet.psi=l2",
                   "sinet.loss=per_class", "sinet.alpha=1.0", "sinet.beta=2.0", method="sinet")
    samples = pd.read_csv(tmp_path / "samples.csv")
    assert np.allclose(samples["weight"], np.clip(1.0 - samples["prototype_distance"], 0, None) ** 2, atol=1e-5)
    assert m["detection"]["auc"] > 0.6


def test_user_side_information_file(tmp_path):
    side = tmp_path / "digits_shapes.yaml"
    side.write_text("classes:\n" + "".join(f"  '{d}': {{parent: {'round' if d in (0, 6, 8, 9) else 'straight'}}}\n"
                                           for d in range(10)) + "hierarchy:\n  round: digit\n  straight: digit\n")
    m = run_digits(tmp_path / "run", "epochs=2", "noise=symmetric:0.4", "sinet.start_epoch=2", "sinet.graph=hierarchy",
                   f"sinet.side_info={side}", method="sinet")
    assert m["detection"]["auc"] > 0.8
    side.write_text("classes:\n  '0': {parent: round}\n")
    with pytest.raises(ConfigError, match=r"no side information for class\(es\) 1, 2, 3"):
        run_digits(tmp_path / "bad", "epochs=1", f"sinet.side_info={side}", "sinet.graph=hierarchy", method="sinet")


@pytest.mark.parametrize("override,message", [("sinet.psi=l1", "sinet.psi='l1'"),
                                              ("sinet.graph=wordnet", "sinet.graph='wordnet'"),
                                              ("sinet.prototype_source=trusted", "setting=verify")])
def test_bad_options_are_refused(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run_digits(tmp_path, "epochs=1", override, method="sinet")


def test_sinet_resumes_exactly(tmp_path):
    """Weights built at epoch 2 and not rebuilt at 3 must come back from the checkpoint."""
    resumed_like_straight(tmp_path, "sinet", "epochs=3", "noise=symmetric:0.4", "sinet.start_epoch=2",
                          "sinet.refresh_every=2")
    a, b = pd.read_csv(tmp_path / "a" / "samples.csv"), pd.read_csv(tmp_path / "b" / "samples.csv")
    assert np.allclose(a["weight"], b["weight"])


def test_collapsed_weights_are_reported(tmp_path, capsys):
    """alpha = 0.01 leaves w = max(0, 0.01 - d)^beta = 0 for almost every sample."""
    m = run_digits(tmp_path, "epochs=2", "noise=symmetric:0.4", "sinet.start_epoch=2", "sinet.alpha=0.01",
                   method="sinet")
    assert any("sample weights are below 0.001" in w and "collapsed" in w for w in m["labels"]["warnings"])
    assert "warning: sinet:" in capsys.readouterr().out


def test_weight_collapse_rules_by_hand():
    import types

    import torch

    from noisybench.run import Run

    seen = []
    fake = types.SimpleNamespace(epoch=4, warn=seen.append)
    Run.warn_if_collapsed(fake, "m", torch.tensor([0.0] * 19 + [0.5]), zero=0.01)  # 95% below: collapsed
    Run.warn_if_collapsed(fake, "m", torch.tensor([0.0] * 18 + [0.5, 0.5]), zero=0.01)  # 90%: fine
    Run.warn_if_collapsed(fake, "m", torch.full((10,), 0.5), zero=0.01)  # all equal
    assert len(seen) == 2 and "95.0% of the sample weights" in seen[0] and "every sample weight is 0.5" in seen[1]
