"""Synthetic label noise with an exact, seeded flip count.

``symmetric:r``  in each class, round(r·n_c) samples move to a uniformly drawn other class
                 (Co-teaching's "symmetric": every flipped label changes, so r of the labels
                 are wrong).
``uniform:r``    round(r·n) samples drawn from the whole training set get a label drawn
                 uniformly from all K classes, their own included (the "symmetric" noise of
                 the ELR and DivideMix code and most CIFAR code): a fraction r·(K−1)/K of the
                 labels is wrong (40% on CIFAR-10 is 36%, 80% is 72%).
``asymmetric:r`` in each class, round(r·n_c) samples move to class (c+1) mod K (pair flip).
``mapped:r``     the "asymmetric" noise of the CIFAR papers (Patrini et al. 2017, as DivideMix
                 and ELR): in each mapped class, round(r·n_c) samples move to its similar
                 class. cifar10: truck → automobile, bird → airplane, deer → horse, cat ↔ dog
                 (the other five classes keep their labels, so r·½ of all labels flip);
                 cifar100: each class to the next of its block of five consecutive class
                 indices (c → 5⌊c/5⌋ + (c+1) mod 5, as ELR's code).
``human:NAME``   real human noise from CIFAR-N label files (cifar10/cifar100 only): NAME is
                 aggre, worse, random1, random2, random3 (CIFAR-10N) or noisy (CIFAR-100N).
``real:p``       a published level p of a real-noise dataset that has several (redimagenet:
                 Red Mini-ImageNet's split file ``red_noise_nl_p``); nothing is flipped here.
``instance:r``   part-dependent noise after Xia et al. 2020: each sample gets a flip rate
                 q_i ~ N(r, 0.1²) clipped to [0, 1] and a target distribution
                 softmax(x_i·W_{y_i}) over the other classes (W ~ N(0, 1), x_i the
                 L2-normalised flattened image); exactly round(r·n) samples flip, drawn
                 without replacement with probability proportional to q_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noisybench.errors import ConfigError

NOISE_TYPES = ("none", "symmetric", "uniform", "asymmetric", "mapped", "instance", "human", "real")
CIFAR10_SIMILAR = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
HUMAN_LABEL_SETS = ("aggre", "worse", "random1", "random2", "random3", "noisy")


@dataclass(frozen=True)
class NoiseSpec:
    type: str
    rate: float
    label_set: str | None = None  # which CIFAR-N labels, for type "human"

    @property
    def synthetic(self) -> bool:
        return self.type in ("symmetric", "uniform", "asymmetric", "mapped", "instance")


def parse_noise(spec: str | None) -> NoiseSpec:
    """``"symmetric:0.4"`` -> NoiseSpec("symmetric", 0.4); ``"none"`` -> no synthetic noise."""
    text = "none" if spec in (None, "", "none") else str(spec)
    if text == "none":
        return NoiseSpec("none", 0.0)
    kind, sep, rate_text = text.partition(":")
    if kind not in NOISE_TYPES[1:]:
        raise ConfigError(
            f"noise='{text}': unknown noise type '{kind}'; expected none, symmetric:R, uniform:R, asymmetric:R, mapped:R, instance:R, human:NAME or real:P"
        )
    if kind == "human":
        if rate_text not in HUMAN_LABEL_SETS:
            raise ConfigError(f"noise='{text}': expected human:NAME with NAME one of {', '.join(HUMAN_LABEL_SETS)}")
        return NoiseSpec("human", float("nan"), rate_text)
    try:
        rate = float(rate_text)
    except ValueError:
        raise ConfigError(f"noise='{text}': the rate after ':' must be a number in [0, 1)") from None
    if not sep or not 0.0 <= rate < 1.0:
        raise ConfigError(f"noise='{text}': the rate after ':' must be a number in [0, 1)")
    return NoiseSpec(kind, rate)


UNSTATED = "unspecified"  # a reference number whose source does not say which noise it used


def noise_key(text: str) -> str:
    """The canonical name of a noise setting, as records and the leaderboard write it:
    ``"symmetric:0.40"`` -> ``"symmetric:0.4"``; ``none``, ``real`` and ``human:NAME`` as
    they are. ConfigError for anything else (``unspecified`` included: it names no kind)."""
    if text in ("none", "real"):
        return text
    spec = parse_noise(text)
    return f"human:{spec.label_set}" if spec.type == "human" else f"{spec.type}:{spec.rate:g}"


def realised_rate(flags: np.ndarray | None) -> float | None:
    """The fraction of training labels that are wrong, over the samples whose truth is known
    (``flags``: 1 wrong, 0 right, -1 unknown); None where none is known. What a run trained
    on, whatever the noise's name says (``uniform:0.4`` on 10 classes: about 0.36)."""
    if flags is None:
        return None
    known = np.asarray(flags)[np.asarray(flags) >= 0]
    return float(np.mean(known == 1)) if len(known) else None


def noise_record(spec: NoiseSpec, flags: np.ndarray | None) -> dict:
    """metrics.json's ``noise``: the kind and nominal rate (the measured rate for human
    labels, null for real-world noise), the CIFAR-N label set, and the realised rate."""
    record: dict = {"type": spec.type, "rate": None if spec.rate != spec.rate else spec.rate}
    if spec.label_set:
        record["label_set"] = spec.label_set
    record["realised_rate"] = realised_rate(flags)
    return record


def _per_class_flips(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Indices to flip: exactly round(rate·n_c) random samples of each class."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = int(round(rate * len(members)))
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def similar_classes(dataset: str, class_names: list[str]) -> np.ndarray:
    """For ``mapped`` noise: each class's target class, or -1 where the class keeps its labels."""
    if dataset == "cifar10":
        index = {name: i for i, name in enumerate(class_names)}
        return np.array([index[CIFAR10_SIMILAR[name]] if name in CIFAR10_SIMILAR else -1 for name in class_names])
    if dataset == "cifar100":
        c = np.arange(len(class_names))
        return 5 * (c // 5) + (c + 1) % 5
    raise ConfigError(f"noise=mapped:R is defined for cifar10 and cifar100 only, not '{dataset}'; "
                      "asymmetric:R is the pair flip for any dataset")


def apply_noise(
    labels: np.ndarray,
    num_classes: int,
    spec: NoiseSpec,
    seed: int | list[int],
    features: np.ndarray | None = None,
    targets: np.ndarray | None = None,
) -> np.ndarray:
    """Noisy copy of ``labels`` under ``spec``; every flipped sample changes class, but under
    ``uniform`` a redrawn label may come out as the true one.
    ``targets``: the class map of ``mapped`` noise (``similar_classes``)."""
    labels = np.asarray(labels, dtype=np.int64)
    noisy = labels.copy()
    if not spec.synthetic or spec.rate == 0.0:
        return noisy
    if num_classes < 2:
        raise ConfigError("synthetic noise needs at least two classes")
    rng = np.random.default_rng(seed)
    if spec.type == "symmetric":
        flip = _per_class_flips(labels, spec.rate, rng)
        shift = rng.integers(1, num_classes, size=len(flip))
        noisy[flip] = (labels[flip] + shift) % num_classes
    elif spec.type == "uniform":
        chosen = rng.choice(len(labels), size=int(round(spec.rate * len(labels))), replace=False)
        noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    elif spec.type == "asymmetric":
        flip = _per_class_flips(labels, spec.rate, rng)
        noisy[flip] = (labels[flip] + 1) % num_classes
    elif spec.type == "mapped":
        if targets is None:
            raise ConfigError("noise=mapped:R needs the dataset's class map")
        movable = np.flatnonzero(targets[labels] >= 0)  # samples of the mapped classes
        flip = movable[_per_class_flips(labels[movable], spec.rate, rng)]
        noisy[flip] = targets[labels[flip]]
    else:
        noisy = _instance_noise(labels, num_classes, spec.rate, rng, features)
    return noisy


def _instance_noise(
    labels: np.ndarray,
    num_classes: int,
    rate: float,
    rng: np.random.Generator,
    features: np.ndarray | None,
) -> np.ndarray:
    if features is None:
        raise ConfigError("noise=instance needs image features, which this dataset does not provide")
    x = features.reshape(len(labels), -1).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    q = np.clip(rng.normal(rate, 0.1, size=len(labels)), 0.0, 1.0)
    w = rng.standard_normal((num_classes, x.shape[1], num_classes))
    count = int(round(rate * len(labels)))
    # Weighted sampling without replacement (Efraimidis–Spirakis keys u^(1/q)).
    keys = np.log(rng.random(len(labels))) / np.maximum(q, 1e-12)
    flip = np.argsort(-keys)[:count]
    noisy = labels.copy()
    for i in flip:
        scores = x[i] @ w[labels[i]]
        scores[labels[i]] = -np.inf
        p = np.exp(scores - scores.max())
        noisy[i] = rng.choice(num_classes, p=p / p.sum())
    return noisy
