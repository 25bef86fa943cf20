"""Recompute the shipped relation matrices from the side-information YAML files.

    python -m noisybench_sinet.regenerate                # every shipped file
    python -m noisybench_sinet.regenerate clothing1m --check

Needs ``pip install 'noisybench[side-info]'`` (the sentence model and WordNet 3.0) or
``--wordnet DIR``. ``--check`` writes nothing and exits 1 if a shipped graph differs from
what its YAML gives (beyond 1e-4, float noise between machines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from noisybench.records import write_text
from noisybench_sinet.graph import GRAPH_PARTS
from noisybench_sinet.side_info import (
    SHIPPED,
    TEXT_MODEL,
    build_matrices,
    load_side_info,
    shipped_files,
)

DECIMALS = 6
TOLERANCE = 1e-4


def graph_from_yaml(path: Path, wordnet_dir: str | None = None) -> dict[str, Any]:
    """The graph file's content for every class of a side-information file, in file order."""
    info = load_side_info(path)
    names = list(info.classes)
    matrices = build_matrices(info, names, list(GRAPH_PARTS), wordnet_dir)
    graph = {"source": path.name, "text_model": TEXT_MODEL, "wordnet": "3.0",
             "classes": names, "synsets": matrices["synsets"]}
    for part in GRAPH_PARTS:
        graph[part] = np.round(matrices[part], DECIMALS).tolist()
    return graph


def to_json(graph: dict[str, Any]) -> str:
    """JSON with one matrix row per line, so that a change shows as a readable diff."""
    fields = []
    for key, value in graph.items():
        if key in GRAPH_PARTS:
            rows = ",\n    ".join(json.dumps(row) for row in value)
            fields.append(f'  "{key}": [\n    {rows}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def differences(shipped: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """What differs between a shipped graph and a freshly computed one."""
    found = [key for key in ("classes", "synsets") if shipped.get(key) != fresh[key]]
    for part in GRAPH_PARTS:
        a, b = np.asarray(shipped.get(part, [])), np.asarray(fresh[part])
        if a.shape != b.shape or not np.allclose(a, b, atol=TOLERANCE, rtol=0):
            found.append(part)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m noisybench_sinet.regenerate", description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="*", default=list(SHIPPED), help=f"any of {', '.join(SHIPPED)}")
    parser.add_argument("--check", action="store_true", help="compare with the shipped graphs, write nothing")
    parser.add_argument("--wordnet", help="folder with WordNet 3.0's data.noun and index.noun")
    args = parser.parse_args(argv)
    failed = False
    for dataset in args.datasets:
        yaml_path, graph_path = shipped_files(dataset)
        fresh = graph_from_yaml(yaml_path, args.wordnet)
        if args.check:
            shipped = json.loads(graph_path.read_text(encoding="utf-8"))
            differ = differences(shipped, fresh)
            failed |= bool(differ)
            print(f"{graph_path.name}: " + (f"differs in {', '.join(differ)}" if differ else "up to date"))
        else:
            write_text(graph_path, to_json(fresh))
            print(f"wrote {graph_path} ({len(fresh['classes'])} classes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
