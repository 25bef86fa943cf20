"""SMP: self-learning with multi-prototypes (Han, Luo & Wang, ICCV 2019).

Loss (eq. 4): (1 − alpha)·CE(F(x), y) + alpha·CE(F(x), y_hat), alpha = 0 before
``start_epoch``. At the start of epoch ``start_epoch`` and every ``correct_every`` epochs
after it, each class's ``samples_per_class`` sampled images give ``num_prototypes``
prototypes (prototypes.py) and every training sample gets y_hat = argmax_c sigma_c.
``start_epoch=auto`` (the default) starts once the model is ready (readiness.py): the
epoch after the val accuracy has flattened, at the latest half-way through training.

Guard: a correction that would change more than ``max_changed`` of the labels (default
half: no usable dataset's noise needs more) is refused, the previous labels are kept and
the console and ``labels.warnings`` say so; with ``max_changed=null`` one changing more
than half is only reported.

Features (pooled pre-logit) come from ``feature_source``:
  eval_pass   one no-grad pass over the training set with eval transforms (faithful)
  train_pass  harvested from the previous epoch's training forward passes: no extra pass,
              but the features are of augmented images under a model that moved during
              that epoch (an eval pass stands in where no previous epoch exists)
After the last epoch the final model corrects the labels once more, for the record only
(the paper's Table 2 "Correct Final"): the per-sample outputs and ``labels.corrected_accuracy``
are those of the final model, ``corrected_accuracy_initial`` those of the first correction.
Per-sample outputs: ``corrected_label`` (y_hat), ``noise_score`` (max sigma − sigma_y);
``flagged`` follows as y_hat ≠ y. Each correction also logs what the network's argmax and a
k-NN vote would have labelled (diagnostics.py), scored by the core against the true labels.

Departures, off by default (measured in docs/methods/smp.md): ``agreeing_candidates`` (each
correction twice, the second drawing only from samples the first gives their noisy label),
``network_candidates`` (only samples the network gives their noisy label),
``centre_features`` (similarities of features less the training set's mean).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from noisybench import hookimpl
from noisybench.config import check_nullable
from noisybench.errors import ConfigError
from noisybench_smp import diagnostics
from noisybench_smp.prototypes import class_scores, relabel, select_prototypes
from noisybench_smp.readiness import latest_start, ready

FEATURE_SOURCES = ("eval_pass", "train_pass")
PROTOTYPE_METHODS = ("density", "kmeans++", "density_euclidean")
SIMILARITIES = ("cosine", "euclidean")


# The methods catalog (docs/methods/catalog.md) is generated from this.
CATALOG = {
    "family": "label correction",
    "paper": "Han, Luo & Wang, ICCV 2019",
    "code": None,
    "checked": "Algorithm 1 on hand cases (the rank threshold S_c, density rho, eta, the prototype walk with "
               "eta < 0.95, sigma as a mean), eq. 8 written out on random data, label recovery on two clusters "
               "per class, and the 2024 reimplementation's change_margin and agreeing candidates on features set "
               "by hand (the authors published no code)",
}

# What each option means: `noisybench config` prints it beside the option's value.
OPTION_HELP = {
    "start_epoch": "first correcting epoch; auto: once the model is ready (val gain flattens, readiness.py)",
    "ready_fraction": "start_epoch=auto: ready once the last epoch adds at most this share of the val gain so far",
    "max_changed": "refuse a correction that would change more than this fraction of the labels (null: never)",
    "alpha": "eq. 4's weight of the corrected labels' loss",
    "correct_every": "correct the labels every n epochs from start_epoch",
    "samples_per_class": "m: candidates drawn per class for the prototypes",
    "num_prototypes": "p: prototypes per class",
    "threshold_quantile": "rank of S_c among the off-diagonal similarities (eq. 6)",
    "eta_max": "eq. 7's bound: prototypes have eta below it",
    "eta_ties": "paper: eq. 7 as written; order: ties at rho_max broken by sample order",
    "feature_source": "eval_pass: a no-grad pass per correction; train_pass: features harvested while training",
    "similarity": "cosine (the paper) or euclidean",
    "prototypes": "density (the paper), kmeans++ or density_euclidean (Table 4)",
    "change_margin": "change a label only if sigma of the new class, above the least similar class's, beats the "
                     "old one's by this fraction (0.15: 15% higher)",
    "agreeing_candidates": "each correction twice: prototypes again from the samples whose first y_hat is their "
                           "noisy label",
    "network_candidates": "draw candidates only from samples the network itself gives their noisy label",
    "centre_features": "subtract the training set's mean feature before every similarity",
}


@hookimpl
def noisybench_config_defaults() -> dict:
    return {
        "start_epoch": "auto",  # the paper leaves it open: once the model is ready (readiness.py), or an epoch
        "ready_fraction": 0.1,  # start_epoch=auto: ready once the last epoch adds <= 10% of the val gain so far
        "max_changed": 0.5,  # refuse a correction changing more than this fraction of labels (null: never refuse)
        "alpha": 0.5,
        "correct_every": 1,
        "samples_per_class": 1280,
        "num_prototypes": 8,
        "threshold_quantile": 0.4,
        "eta_max": 0.95,
        "eta_ties": "paper",
        "feature_source": "eval_pass",
        "similarity": "cosine",
        "prototypes": "density",
        "change_margin": 0.0,
        "agreeing_candidates": False,
        "network_candidates": False,  # departures measured in docs/methods/smp.md, off: the paper's rule
        "centre_features": False,
    }


def first_epoch(run) -> int | None:
    """The first correcting epoch: the option, or with ``auto`` the one decided so far (None: not yet)."""
    start = run.options["start_epoch"]
    return run.state.get("start_epoch") if start == "auto" else start


def correcting(run, epoch: int) -> bool:
    """Whether labels are corrected at the start of ``epoch``."""
    start = first_epoch(run)
    return start is not None and epoch >= start and (epoch - start) % run.options["correct_every"] == 0


def decide_start(run, epoch: int) -> None:
    """``start_epoch=auto``: start at ``epoch`` if the model is ready, or at the latest half-way."""
    if run.options["start_epoch"] != "auto" or run.state.get("start_epoch") is not None:
        return
    curve = [h.get("val_accuracy") for h in run.history if h.get("stage", "train") == "train"]
    if epoch >= 2 and (ready(curve, run.num_classes, run.options["ready_fraction"])
                       or epoch >= latest_start(run.num_epochs)):
        run.state["start_epoch"] = epoch
        run.log(smp_start_epoch=epoch)


def guarded(run, which: str, y_hat: torch.Tensor) -> bool:
    """Whether to keep correction ``which`` ("at epoch 3"): warn past half the labels changed,
    refuse past ``max_changed``."""
    changed = float((y_hat.cpu() != run.noisy_labels).float().mean())
    limit = run.options["max_changed"]
    if limit is not None and changed > limit:
        run.warn(f"smp: refused the correction {which}: it would change {changed:.1%} of the labels, "
                 f"more than smp.max_changed={limit}; the previous labels are kept")
        return False
    if changed > 0.5:
        run.warn(f"smp: the correction {which} changes {changed:.1%} of the labels, more than half: the "
                 "model may not support it yet (see smp.start_epoch, smp.max_changed)")
    return True


@hookimpl
def noisybench_check_options(options: dict) -> None:
    o = options
    for key, allowed in (("feature_source", FEATURE_SOURCES), ("prototypes", PROTOTYPE_METHODS),
                         ("similarity", SIMILARITIES), ("eta_ties", ("order", "paper"))):
        if o[key] not in allowed:
            raise ConfigError(f"smp.{key}='{o[key]}': expected one of {', '.join(allowed)}")
    if o["samples_per_class"] < 1 or o["num_prototypes"] < 1 or o["correct_every"] < 1:
        raise ConfigError("smp.samples_per_class, smp.num_prototypes and smp.correct_every must be at least 1")
    start = o["start_epoch"]
    if start != "auto" and (not isinstance(start, int) or isinstance(start, bool) or start < 1):
        raise ConfigError(f"smp.start_epoch={start!r}: expected auto or an epoch (1 or more)")
    check_nullable("smp", o, {"max_changed": float})
    if not 0 < o["ready_fraction"] <= 1 or (o["max_changed"] is not None and not 0 < o["max_changed"] <= 1):
        raise ConfigError("smp.ready_fraction and smp.max_changed must be in (0, 1]")
    if not 0.0 <= o["alpha"] <= 1.0 or not 0.0 <= o["threshold_quantile"] <= 1.0:
        raise ConfigError("smp.alpha and smp.threshold_quantile must be in [0, 1]")
    if o["change_margin"] < 0:
        raise ConfigError(f"smp.change_margin={o['change_margin']}: expected 0 (the paper: any change) or more")


@hookimpl
def noisybench_setup(run) -> None:
    start = run.options["start_epoch"]
    if start != "auto" and start > run.num_epochs:
        run.warn(f"smp.start_epoch={start} is past the last epoch ({run.num_epochs}): no label is ever corrected; "
                 "the run is cross-entropy")
    run.state["corrected"] = run.noisy_labels.clone()
    run.state["margin"] = torch.zeros(run.num_train)
    run.state["corrections"] = 0


def candidate_filters(run, predicted: torch.Tensor | None = None) -> list[np.ndarray]:
    """Masks over the training set that narrow the candidates, in order of application:
    the trusted samples (setting ``verify``), then those the network's argmax ``predicted``
    gives their noisy label (``network_candidates``)."""
    filters = []
    if run.config["setting"] == "verify":
        trusted = np.zeros(run.num_train, dtype=bool)
        trusted[run.trusted_indices().numpy()] = True
        filters.append(trusted)
    if run.options["network_candidates"] and predicted is not None:
        filters.append(predicted.cpu().numpy() == run.noisy_labels.numpy())
    return filters


def candidates(run, c: int, generator: np.random.Generator, filters: list[np.ndarray] | None = None) -> np.ndarray:
    """Up to m training indices of class c to draw prototypes from.

    Noisy label c, narrowed by each of ``filters`` (default ``candidate_filters``) in turn; a
    filter that would leave class c without a candidate is skipped for that class.
    """
    pool = run.noisy_labels.numpy() == c
    for keep in candidate_filters(run) if filters is None else filters:
        narrowed = pool & keep
        pool = narrowed if narrowed.any() else pool
    members = np.flatnonzero(pool)
    m = run.options["samples_per_class"]
    return np.sort(generator.choice(members, size=m, replace=False)) if len(members) > m else members


def training_outputs(run) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of every training sample, from the chosen source: an eval pass,
    or the features harvested in training with the current classifier's logits on them."""
    harvested = run.harvest_end()  # the previous epoch's, with feature_source=train_pass
    if harvested is not None:
        features = harvested.to(run.device)
        head = run.accelerator.unwrap_model(run.model).backbone.get_classifier()
        with torch.no_grad():
            return features, head(features.to(head.weight.dtype))
    dtype = torch.float16 if run.device.type == "cuda" else torch.float32
    logits, features = run.predict(dtype=dtype)
    return features, logits


def class_prototypes(run, features: torch.Tensor, filters: list[np.ndarray], seed: list[int]) -> list[torch.Tensor]:
    """Each class's prototypes (prototypes.py) from its candidates, drawn with ``seed``."""
    o = run.options
    generator = np.random.default_rng(seed)
    prototypes = []
    for c in range(run.num_classes):
        chosen = torch.as_tensor(candidates(run, c, generator, filters), device=features.device)
        if len(chosen) == 0:
            prototypes.append(features.new_zeros(0, features.shape[1]).float())
            continue
        prototypes.append(select_prototypes(features[chosen].float(), o["num_prototypes"], o["threshold_quantile"],
                                            o["prototypes"], o["similarity"], o["eta_max"], seed=seed[0] + seed[1],
                                            ties=o["eta_ties"]))
    return prototypes


def correct_labels(run, epoch: int, diagnostics_prefix: str = "smp") -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes per class, then (y_hat, margin) for every training sample; the random
    draws depend on (seed, epoch) only. With ``agreeing_candidates`` a first y_hat narrows
    the candidates of a second drawing to the samples it gives their noisy label."""
    o = run.options
    with run.phase("features"):
        raw, logits = training_outputs(run)
    features = raw - raw.float().mean(dim=0).to(raw.dtype) if o["centre_features"] else raw
    filters = candidate_filters(run, logits.argmax(dim=1))
    seed = [run.config["seed"], epoch]
    with run.phase("prototypes"):
        prototypes = class_prototypes(run, features, filters, seed)
    if o["agreeing_candidates"]:
        with run.phase("relabel"):
            first = class_scores(features, prototypes, o["similarity"]).argmax(dim=1)
        with run.phase("prototypes"):
            agreeing = (first.cpu() == run.noisy_labels).numpy()
            prototypes = class_prototypes(run, features, [*filters, agreeing], [*seed, 1])
    with run.phase("relabel"):
        y_hat, margin = relabel(class_scores(features, prototypes, o["similarity"]), run.noisy_labels,
                                o["change_margin"])
    with run.phase("diagnostics"):
        diagnostics.record(run, diagnostics_prefix, raw, logits, y_hat)
    return y_hat.to(run.device), margin.float().cpu()


def final_correction(run, epoch: int) -> bool:
    """Whether the final model corrects the labels after ``epoch`` (the last, if the run corrects at all)."""
    start = first_epoch(run)
    return epoch == run.num_epochs and start is not None and epoch >= start


@hookimpl
def noisybench_epoch_start(run, epoch: int) -> None:
    run.state.pop("final", None)  # a finished run extended with more epochs trains on
    run.state["corrected"] = run.state["corrected"].to(run.device)
    decide_start(run, epoch)
    if correcting(run, epoch):
        y_hat, margin = correct_labels(run, epoch)
        if guarded(run, f"at epoch {epoch}", y_hat):
            run.state["corrected"], run.state["margin"] = y_hat, margin
            run.state["corrections"] += 1
    if epoch < run.num_epochs:  # undecided (auto): the next epoch may start correcting
        upcoming = correcting(run, epoch + 1) or first_epoch(run) is None
    else:
        upcoming = final_correction(run, epoch)
    if run.options["feature_source"] == "train_pass" and upcoming:
        run.harvest_start()  # this epoch's forward passes feed the next correction


@hookimpl
def noisybench_epoch_end(run, epoch: int) -> None:
    if final_correction(run, epoch):  # the labels of the final model, as epoch + 1 would draw them
        corrected, margin = correct_labels(run, epoch + 1, "smp_final")
        if guarded(run, "of the final model", corrected):
            run.state["final"] = {"corrected": corrected, "margin": margin}


@hookimpl
def noisybench_loss(run, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                    indices: torch.Tensor, epoch: int) -> torch.Tensor:
    """(1 − alpha)·CE(logits, y) + alpha·CE(logits, y_hat[indices])  (eq. 4)."""
    run.harvest(indices, features)
    logits = logits.float()
    noisy_loss = F.cross_entropy(logits, labels)
    start = first_epoch(run)
    alpha = run.options["alpha"] if start is not None and epoch >= start else 0.0
    if alpha == 0.0:
        return noisy_loss
    y_hat = run.state["corrected"][indices.to(run.state["corrected"].device)].to(logits.device)
    return (1 - alpha) * noisy_loss + alpha * F.cross_entropy(logits, y_hat)


@hookimpl
def noisybench_sample_outputs(run) -> dict | None:
    if not run.state["corrections"]:
        return None
    latest = run.state.get("final") or run.state
    return {"corrected_label": latest["corrected"].cpu(), "noise_score": latest["margin"]}
