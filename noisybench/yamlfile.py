"""YAML as a config is read: one meaning per scalar, no duplicate keys, bounded in size and depth.

PyYAML reads YAML 1.1, where ``seed: 010`` is 8, ``1:30`` is 90, ``1_000`` is 1000 and
``yes``/``no``/``on``/``off`` are booleans, while YAML 1.2 (and most other readers) read
10, strings and strings. Here plain scalars resolve as YAML 1.2's core schema does
(``true``/``false``, ``null``, decimal, ``0x`` and ``0o`` integers, floats with ``.inf`` and
``.nan``; ``1e-3`` is a number), dates and ``=`` stay strings, and a scalar the two versions
read differently is refused naming its line: write ``10``, ``true`` or quote it.

A key given twice in one mapping is refused (PyYAML keeps the last silently). Aliases are
references, so a small file can stand for billions of values ("billion laughs") and a value
can contain itself: a document that expands to more than ``MAX_NODES`` values, contains
itself or nests deeper than ``MAX_DEPTH`` levels is refused before anything walks it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

MAX_NODES = 100_000  # a config has a few hundred values
MAX_DEPTH = 64
AMBIGUOUS = "tag:noisybench,2024:ambiguous"
CORE = "tag:yaml.org,2002:"
RESOLVERS = [  # (tag, pattern, first characters), tried in order
    (CORE + "bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (CORE + "null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (CORE + "merge", r"^(?:<<)$", "<"),
    (CORE + "int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    (CORE + "int", r"^(?:0x[0-9a-fA-F]+|0o[0-7]+)$", "0"),
    (AMBIGUOUS, r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$", "yYnNoO"),
    (AMBIGUOUS, r"^[-+]?(?:0[0-9_]+|0b[01_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$", "-+0123456789"),
    (AMBIGUOUS, r"^(?=.*_)[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
    (CORE + "float", r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$", "-+.0123456789"),
    (CORE + "float", r"^(?:[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+."),
]


class YamlLoader(yaml.SafeLoader):
    """SafeLoader (no tags that build Python objects) with the rules of the module docstring."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_document(self, node: Any) -> Any:
        expanded_size(node, {}, set(), "")
        return super().construct_document(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if value_node.tag == AMBIGUOUS and isinstance(key_node, ScalarNode):
                    raise ConstructorError(None, None, f"{key_node.value}: {ambiguity(value_node.value)}",
                                           value_node.start_mark)
                if isinstance(key_node, ScalarNode) and key_node.tag != CORE + "merge":
                    if key_node.value in seen:
                        raise ConstructorError(None, None, f"key '{key_node.value}' given twice (first on line "
                                               f"{seen[key_node.value].line + 1})", key_node.start_mark)
                    seen[key_node.value] = key_node.start_mark
        return super().construct_mapping(node, deep)


def ambiguity(value: str) -> str:
    """Why a plain scalar is refused: what YAML 1.1 and YAML 1.2 each read it as."""
    if value.lstrip("+-")[:1].isdigit() or value.startswith("."):
        if ":" in value:
            meaning, write = f"base 60 ({yaml.load(value, Loader=yaml.SafeLoader)})", "the number, or quote it"
        elif value.lstrip("+-").startswith("0") and "_" not in value and not value.lstrip("+-").startswith("0b"):
            meaning, write = f"octal ({yaml.load(value, Loader=yaml.SafeLoader)})", f"{int(value)} (or 0o{value.lstrip('+-0') or '0'} for octal)"
        else:
            meaning, write = f"the number {yaml.load(value, Loader=yaml.SafeLoader)}", "the number without _ or 0b, or quote it"
        return f"'{value}' is {meaning} in YAML 1.1 and a string or another number in YAML 1.2; write {write}"
    return f"'{value}' is a boolean in YAML 1.1 and a string in YAML 1.2; write true or false, or quote it"


def refuse_ambiguous(loader: YamlLoader, node: ScalarNode) -> Any:
    raise ConstructorError(None, None, ambiguity(node.value), node.start_mark)


YamlLoader.add_constructor(AMBIGUOUS, refuse_ambiguous)
for _tag, _pattern, _first in RESOLVERS:
    YamlLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int], where: str) -> int:
    """How many values ``node`` (at dotted key ``where``) stands for once its aliases are
    expanded; refuses a node that contains itself or expands past MAX_NODES, naming the key.
    Each distinct node is counted once (memo)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    named = f"{where}: " if where else ""
    if key in open_nodes:
        raise ConstructorError(None, None, f"{named}a value that contains itself (a recursive alias)", node.start_mark)
    open_nodes.add(key)
    if isinstance(node, SequenceNode):
        size = 1 + sum(expanded_size(child, sizes, open_nodes, where) for child in node.value)
    elif isinstance(node, MappingNode):
        size = 1
        for k, v in node.value:
            inner = f"{where}.{k.value}".lstrip(".") if isinstance(k, ScalarNode) else where
            size += expanded_size(k, sizes, open_nodes, where) + expanded_size(v, sizes, open_nodes, inner)
    else:
        size = 1
    open_nodes.discard(key)
    if size > MAX_NODES:
        raise ConstructorError(None, None, f"{named}expands to more than {MAX_NODES:,} values (aliases repeated "
                               "within aliases?)", node.start_mark)
    sizes[key] = size
    return size


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def describe(exc: yaml.YAMLError) -> str:
    """``line N: what`` of a YAML error, in one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())
