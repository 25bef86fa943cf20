"""Find method plugins through entry points and build one plugin manager per run."""

from __future__ import annotations

import ast
import difflib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Iterable

import pluggy

from noisybench import hookspecs
from noisybench.errors import ConfigError

ENTRY_POINT_GROUP = "noisybench"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    package: str
    version: str
    entry_point: EntryPoint


def installed_methods() -> dict[str, MethodInfo]:
    """Every method installed in this environment, shipped or third-party, by name."""
    methods = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        methods[ep.name] = MethodInfo(
            name=ep.name,
            package=dist.name if dist else "?",
            version=dist.version if dist else "?",
            entry_point=ep,
        )
    return dict(sorted(methods.items()))


def load_method(name: str) -> Any:
    """Import the plugin of method ``name``; a class is instantiated so each run gets its own."""
    methods = installed_methods()
    if name not in methods:
        hint = difflib.get_close_matches(name, methods, n=1)
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(
            f"unknown method '{name}'{suggestion}; installed methods: {', '.join(methods) or 'none'}"
        )
    try:
        plugin = methods[name].entry_point.load()
    except Exception as exc:  # noqa: BLE001 - a plugin's own import failed: one line naming it
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ConfigError(f"method '{name}': its plugin {methods[name].entry_point.value} cannot be imported "
                          f"({reason})") from None
    return plugin() if isinstance(plugin, type) else plugin


def method_description(info: MethodInfo) -> str:
    """First line of the plugin's docstring, read from its source without importing it (a
    plugin's imports, torch and timm among them, take seconds); a plugin whose source cannot
    be read (compiled, zipped) is imported instead."""
    try:
        doc = source_docstring(info.entry_point)
    except (OSError, SyntaxError, ValueError, ImportError):
        try:
            doc = info.entry_point.load().__doc__
        except Exception as exc:  # noqa: BLE001 - listed, with why it cannot run
            return f"(cannot be imported: {type(exc).__name__})"
    doc = (doc or "").strip()
    return doc.splitlines()[0] if doc else ""


def source_docstring(ep: EntryPoint) -> str | None:
    """The docstring of ``module`` or ``module:Name`` as written in the module's source."""
    spec = importlib.util.find_spec(ep.module)  # finds the file; imports only parent packages
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ImportError(ep.module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for name in ep.attr.split(".") if ep.attr else []:
        tree = next((node for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))
                     and node.name == name), None)
        if tree is None:
            raise ImportError(ep.value)
    return ast.get_docstring(tree)


def make_plugin_manager(method: str, extra_plugins: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A fresh manager with the core defaults, method ``method`` and any ``extra_plugins``.

    Only the selected method is registered, so its hooks never mix with another method's.
    ``check_pending`` makes a misspelt hook name fail here rather than being ignored.
    """
    from noisybench import defaults  # imports torch: only when a run is built

    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="noisybench.defaults")
    try:
        pm.register(load_method(method), name=method)
        for plugin in extra_plugins:
            pm.register(plugin)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # a misspelt hook or argument: one line naming both
        raise ConfigError(f"method '{method}': {'; '.join(str(exc).split(chr(10)))}") from None
    return pm


def config_defaults(pm: pluggy.PluginManager) -> dict[str, Any]:
    """The merged option defaults that the registered plugins declare."""
    merged: dict[str, Any] = {}
    for part in reversed(pm.hook.noisybench_config_defaults()):
        merged.update(part or {})
    return merged
