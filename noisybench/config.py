"""Run configuration: defaults < dataset defaults < YAML file < ``key=value`` overrides.

Keys are dotted paths into nested sections (``optimizer.lr``); the method's options form
the section named after the method (``smp.alpha``). Every key must exist in the defaults,
so a typo fails with the key's name instead of being silently ignored.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Iterable

import yaml

from noisybench.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "method": None,
    "dataset": None,
    "setting": "noisy",
    "seed": 0,
    "noise": "none",
    "epochs": 10,
    "batch_size": 128,
    "eval_batch_size": 512,
    "mixed_precision": "auto",
    "progress": True,
    "optimizer": {"name": "sgd", "lr": 0.002, "momentum": 0.9, "weight_decay": 5e-3, "nesterov": False},
    "lr_schedule": {"step_every": 5, "gamma": 0.1, "milestones": None},
    "model": {
        "name": "resnet50",
        "pretrained": False,
        "pretrained_file": None,
        "drop_rate": 0.0,
    },
    "data": {
        "root": None,
        "food101_root": None,
        "cifar_n_file": None,
        "download": False,
        "decoder": "torchvision",
        "image_size": 224,
        "num_workers": None,
        "pin_memory": None,
        "persistent_workers": True,
        "split_seed": 0,
        "val_fraction": 0.1,
        "test_fraction": 0.2,
        "clean_fraction": 0.1,
        "epoch_subset": 0,
    },
    "finetune": {"epochs": None, "lr": None},
    "report": {"histogram_epochs": None},
}

SETTINGS = ("noisy", "verify", "clean")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


def parse_override(text: str) -> tuple[str, Any]:
    """``optimizer.lr=0.1`` -> ("optimizer.lr", 0.1); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read the value of '{key}': {exc}") from exc
    return key.strip(), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _check_type(key: str, default: Any, value: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"config key '{key}' ({source}) expects {type(default).__name__}, got {value!r}"
        )
    return value


def apply(config: dict[str, Any], updates: dict[str, Any], source: str) -> None:
    """Set dotted ``updates`` in ``config`` in place; unknown keys fail naming them."""
    known = flatten(config)
    sections = {k.rsplit(".", 1)[0] for k in known if "." in k}
    for key, value in updates.items():
        if key in sections and isinstance(value, dict):
            apply(config, {f"{key}.{k}": v for k, v in value.items()}, source)
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(f"unknown config key '{key}' ({source}){suggestion}")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = _check_type(key, node[leaf], value, source)


def resolve(
    method_defaults: dict[str, Any],
    dataset_defaults: dict[str, Any],
    file_layers: Iterable[tuple[str, dict[str, Any]]],
    overrides: Iterable[str],
    method: str,
) -> dict[str, Any]:
    """Merge the layers in order and check the values the core itself reads.

    ``file_layers`` are (source name, mapping) pairs read from YAML; the source name
    appears in error messages.
    """
    config = copy.deepcopy(DEFAULTS)
    config[method] = copy.deepcopy(method_defaults)
    apply(config, flatten(dataset_defaults), "dataset defaults")
    for source, layer in file_layers:
        apply(config, {k: v for k, v in flatten(layer).items() if k not in ("method", "dataset")}, source)
    apply(config, dict(parse_override(o) for o in overrides), "command line")
    config["method"] = method
    validate(config)
    return config


def validate(config: dict[str, Any]) -> None:
    from noisybench.noise import parse_noise

    if config["setting"] not in SETTINGS:
        raise ConfigError(f"setting='{config['setting']}': expected one of {', '.join(SETTINGS)}")
    if config["mixed_precision"] not in MIXED_PRECISION:
        raise ConfigError(
            f"mixed_precision='{config['mixed_precision']}': expected one of {', '.join(MIXED_PRECISION)}"
        )
    parse_noise(config["noise"])
    if config["optimizer"]["name"] not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer.name='{config['optimizer']['name']}': expected sgd or adamw")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if config[key] < 1:
            raise ConfigError(f"config key '{key}' must be at least 1, got {config[key]}")
    data = config["data"]
    if data["num_workers"] is not None and (not isinstance(data["num_workers"], int) or data["num_workers"] < 0):
        raise ConfigError(f"config key 'data.num_workers' must be null (automatic) or 0 or more, got {data['num_workers']!r}")
    if data["decoder"] not in ("torchvision", "pil"):
        raise ConfigError(f"data.decoder='{data['decoder']}': expected torchvision or pil")
    for key in ("val_fraction", "test_fraction", "clean_fraction"):
        if not 0.0 <= data[key] < 1.0:
            raise ConfigError(f"config key 'data.{key}' must be in [0, 1), got {data[key]}")
    if data["epoch_subset"] < 0 or (config["finetune"]["epochs"] or 0) < 0:
        raise ConfigError("config keys 'data.epoch_subset' and 'finetune.epochs' must be 0 or more")


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
