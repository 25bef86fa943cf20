"""The class relation graph of SINet (§3.1): S_t = S_l + S_w (eq. 2–3).

Three matrices, each C×C with ones on the diagonal:
  names         S_l from the text embeddings of the class names (Table 2, "CN")
  descriptions  S_l from the embeddings of "name: description" (Table 2, "CD")
  hierarchy     S_w = 1 / (1 + shortest path length) in the class hierarchy (Table 2, "HW"),
                the WordNet path similarity; 0 where two classes share no ancestor
A graph spec sums any of them: "descriptions+hierarchy" is the paper's S_t (and its best).
"""

from __future__ import annotations

import numpy as np

GRAPH_PARTS = ("names", "descriptions", "hierarchy")


def parse_graph_spec(spec: str) -> list[str]:
    """The parts of a spec such as "names+hierarchy", checked and without repeats."""
    parts = [part.strip() for part in str(spec).split("+") if part.strip()]
    unknown = [part for part in parts if part not in GRAPH_PARTS]
    if not parts or unknown or len(set(parts)) != len(parts):
        raise ValueError(f"'{spec}': expected one or more of {', '.join(GRAPH_PARTS)} joined by '+'")
    return parts


def cosine_similarity(embeddings: np.ndarray) -> np.ndarray:
    """S_l^{ij} = v_i·v_j / (‖v_i‖ ‖v_j‖)  (eq. 2)."""
    v = np.asarray(embeddings, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.clip(v @ v.T, -1.0, 1.0)


def path_lengths(ancestors: list[dict[str, int]]) -> np.ndarray:
    """C×C shortest path lengths between classes, given each class's ancestors with their
    distances (itself at 0): min over common ancestors a of d_i(a) + d_j(a); inf if none."""
    count = len(ancestors)
    lengths = np.full((count, count), np.inf)
    for i in range(count):
        for j in range(i, count):
            common = ancestors[i].keys() & ancestors[j].keys()
            if common:
                lengths[i, j] = lengths[j, i] = min(ancestors[i][a] + ancestors[j][a] for a in common)
    return lengths


def path_similarity(lengths: np.ndarray) -> np.ndarray:
    """S_w = 1 / (1 + shortest path length): 1 on the diagonal, 0 for unconnected classes."""
    return 1.0 / (1.0 + np.asarray(lengths, dtype=np.float64))


def relation_graph(matrices: dict[str, np.ndarray], spec: str) -> np.ndarray:
    """S_t: the sum of the matrices that ``spec`` names."""
    return sum(np.asarray(matrices[part], dtype=np.float64) for part in parse_graph_spec(spec))
