"""Further test sets of a dataset, scored by the final model beside its own test set.

mini-WebVision is reported on two test sets, the WebVision validation set (the run's
``test``) and ILSVRC12's validation set of the same classes (``DataSplits.extra_tests``).
Each further set is recorded in metrics.json under ``extra_tests.<name>`` (accuracy, the
macro scores, top-5 accuracy, sample count) and becomes a leaderboard column
``<name> acc`` with the paper's number beside it where ``benchmarks/reference.csv`` has a
row of metric ``<name>_accuracy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PREFIX = "extra_"  # leaderboard columns: extra_<name>_accuracy
SUFFIX = "_accuracy"


def top_k_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Fraction of samples whose label is among the ``k`` highest logits (all of them for k ≥ classes)."""
    if len(labels) == 0:
        return float("nan")
    best = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((best == labels[:, None]).any(dim=1).float().mean())


def record(run: Any, splits: Any) -> dict[str, Any]:
    """``{"extra_tests": {name: scores}}`` for the run's further test sets, or ``{}`` when it
    has none (so other records keep their shape). A collective: every process calls it."""
    import torch

    from noisybench import metrics
    from noisybench.datasets import labels_of

    found = {}
    for name, dataset in splits.extra_tests.items():
        logits, _ = run.predict(dataset=dataset)
        labels = torch.as_tensor(labels_of(dataset), device=logits.device)
        scores = metrics.classification(labels.cpu().numpy(), logits.argmax(dim=1).cpu().numpy(), splits.num_classes)
        scores["top5_accuracy"] = top_k_accuracy(logits.float(), labels)
        scores["num_samples"] = len(labels)
        found[name] = scores
    return {"extra_tests": found} if found else {}


def row_columns(data: dict[str, Any]) -> dict[str, float | None]:
    """A record's further test accuracies as flat leaderboard columns."""
    tests = data.get("extra_tests") or {}
    return {f"{PREFIX}{name}{SUFFIX}": (scores or {}).get("accuracy") for name, scores in tests.items()}


def metric_columns(names) -> dict[str, tuple[str, int]]:
    """The further-test columns among ``names``: column -> (label, scale to percent)."""
    return {name: (f"{name[len(PREFIX):-len(SUFFIX)]} acc", 100) for name in names
            if name.startswith(PREFIX) and name.endswith(SUFFIX) and len(name) > len(PREFIX) + len(SUFFIX)}


def reference_metric(column: str) -> str:
    """The reference.csv metric of a further-test column: ``<name>_accuracy``."""
    return column[len(PREFIX):]
