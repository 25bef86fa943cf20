"""Run configuration: defaults < dataset defaults < YAML file < ``key=value`` overrides.

Keys are dotted paths into nested sections (``optimizer.lr``); the method's options form
the section named after the method (``smp.alpha``). Every key must exist in the defaults,
so a typo fails with the key's name instead of being silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from noisybench.errors import ConfigError
from noisybench.inputs import MIB, NotRegular, read_text
from noisybench.yamlfile import describe, read_yaml

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are 32-bit
CONFIG_LIMIT = MIB  # a config file is a few KiB


def process_limit() -> int:
    """The most loader workers one process may ask for: 4 per core of this machine, at least
    32 (thousands would exhaust the machine's processes and memory)."""
    return max(32, 4 * (os.cpu_count() or 1))

class Section(BaseModel):
    """Strict types (an int is no bool, a string no number), no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class OptimizerConfig(Section):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.002, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-3, ge=0)
    nesterov: bool = False


class ScheduleConfig(Section):
    name: Literal["step", "cosine", "tanh", "poly"] = "step"  # step: the papers'; the others from timm
    step_every: int = Field(5, ge=0)  # step: multiply the lr by gamma every n epochs (0: never)
    gamma: float = Field(0.1, gt=0)
    milestones: list[Annotated[int, Field(ge=1)]] | None = None  # step: instead of step_every
    warmup_epochs: int = Field(0, ge=0)  # epochs rising linearly from warmup_lr to the lr
    warmup_lr: float = Field(1e-5, ge=0)
    min_lr: float = Field(0.0, ge=0)  # cosine, tanh, poly: the lr they end at


class ModelConfig(Section):
    name: str = "resnet50"
    pretrained: bool = False
    pretrained_file: str | None = None
    drop_rate: float = Field(0.0, ge=0, lt=1)
    channels_last: bool | Literal["auto"] = "auto"  # NHWC memory layout; auto: on with CUDA
    compile: bool = False  # torch.compile the backbone (the first steps pay for compiling)


class DataConfig(Section):
    root: str | None = None
    food101_root: str | None = None
    cifar_n_file: str | None = None
    imagenet_root: str | None = None  # webvision: the ImageNet folder whose val/ holds ILSVRC12 val by class
    webvision_classes: int = Field(50, ge=1, le=1000)  # webvision: the first K classes (50: mini-WebVision)
    download: bool = False
    decoder: Literal["scaled", "torchvision", "pil", "gpu"] = "scaled"
    max_pixels: int = Field(64_000_000, ge=1, le=2**31)  # larger images count as unreadable, never decoded
    image_size: Annotated[int, Field(ge=8, le=8192)] | Literal["auto"] = 224
    num_workers: int | None = Field(None, ge=0)
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: int = Field(2, ge=1, le=64)  # batches each worker loads ahead
    # training augmentation (datasets/augmentation.py); auto: the dataset's padding, no flip of single-channel images
    crop_padding: Annotated[int, Field(ge=0, le=1024)] | Literal["auto"] = "auto"
    flip: bool | Literal["auto"] = "auto"
    prepared: str | None = None  # a folder written by `noisybench data prepare`, read instead of data.root
    split_seed: int = Field(0, ge=0, le=SEED_MAX)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_noise: bool = False  # the synthetic noise applies to the validation labels too (ELR's code)
    test_fraction: float = Field(0.2, ge=0, lt=1)
    clean_fraction: float = Field(0.1, ge=0, lt=1)
    epoch_subset: int = Field(0, ge=0)
    cv_folds: int = Field(0, ge=0)  # > 1: train on all but fold cv_fold of the training set, score that fold
    cv_fold: int = Field(0, ge=0)

    @field_validator("num_workers")
    @classmethod
    def workers_this_machine_can_start(cls, value: int | None) -> int | None:
        if value is not None and value > process_limit():
            raise ValueError(f"Input should be at most {process_limit()} (4 per core of this machine)")
        return value

    @model_validator(mode="after")
    def fold_in_range(self) -> "DataConfig":
        if self.cv_folds == 1 or (self.cv_folds and self.cv_fold >= self.cv_folds):
            raise ValueError(f"data.cv_fold must be below data.cv_folds, and data.cv_folds 0 (off) or at least 2; "
                             f"got {self.cv_fold} of {self.cv_folds}")
        return self

    @model_validator(mode="after")
    def splits_leave_training_data(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction must be below 1, got "
                             f"{self.val_fraction} + {self.test_fraction}")
        return self


class FinetuneConfig(Section):
    epochs: int | None = Field(None, ge=0)
    lr: float | None = Field(None, gt=0)


class EvalConfig(Section):
    every: int = Field(1, ge=1)  # val accuracy every k epochs and at the last
    test: Literal["end", "every"] = "end"  # test accuracy at the end only, or after every epoch
    each_network: bool = False  # also each network's own best val epoch, tested by the sum of logits (each_network.py)


TRACKERS = ("tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml", "dvclive")


class ReportConfig(Section):
    histogram_epochs: list[Annotated[int, Field(ge=1)]] | None = None
    trackers: list[Literal[TRACKERS]] = []  # experiment trackers through Accelerate, e.g. [tensorboard]

    @field_validator("trackers", mode="before")
    @classmethod
    def one_tracker_is_a_list_of_one(cls, value: Any) -> Any:
        """``report.trackers=tensorboard`` means ``[tensorboard]``."""
        return [value] if isinstance(value, str) else value


class CoreConfig(Section):
    """The core's keys: every type, range and cross-key rule of a run's config."""

    method: str | None = None
    dataset: str | None = None
    recipe: Literal["auto", "scratch", "finetune"] = "auto"
    setting: Literal["noisy", "verify", "clean"] = "noisy"
    seed: int = Field(0, ge=0, le=SEED_MAX)
    noise: str = "none"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1, le=2**20)
    eval_batch_size: int = Field(512, ge=1, le=2**20)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    progress: bool = True
    # torch's CPU threads per process: auto (1 under 64-pixel inputs, else torch's), a number, null: torch's
    threads: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] | None = "auto"
    optimizer: OptimizerConfig = OptimizerConfig()
    lr_schedule: ScheduleConfig = ScheduleConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    eval: EvalConfig = EvalConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def warmup_within_the_run(self) -> "CoreConfig":
        if self.lr_schedule.warmup_epochs >= self.epochs > 1:
            raise ValueError(f"lr_schedule.warmup_epochs must be below epochs, got {self.lr_schedule.warmup_epochs} "
                             f"of {self.epochs}: the learning rate would never reach optimizer.lr")
        return self


DEFAULTS: dict[str, Any] = CoreConfig().model_dump()
SETTINGS = ("noisy", "verify", "clean")


def parse_override(text: str) -> tuple[str, Any]:
    """``optimizer.lr=0.1`` -> ("optimizer.lr", 0.1); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"expected key=value, got '{text}'")
    if len(raw) > CONFIG_LIMIT:
        raise ConfigError(f"the value of '{key.strip()}' is longer than {CONFIG_LIMIT // MIB} MiB")
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read the value of '{key.strip()}': {describe(exc)}") from None
    return key.strip(), value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of config keys (at most CONFIG_LIMIT, a regular file: yamlfile.py's rules)."""
    path = Path(path)
    if not os.path.lexists(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        text = read_text(path, CONFIG_LIMIT, "config file")
    except NotRegular as exc:  # a FIFO, a device, too large, not UTF-8: the message names the file
        raise ConfigError(str(exc).replace("not UTF-8 text", "not a text file")) from None
    if "\0" in text:
        raise ConfigError(f"{path}: not a text file (a config file is YAML in UTF-8; it holds NUL bytes)")
    try:
        data = read_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {describe(exc)}") from None
    data = {} if data is None else data
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
    if default is None or value is None or default == "auto":  # "auto" or a value: checked by its owner
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
            f"config key '{key}' ({source}) expects {type(default).__name__}, got {short_repr(value)}"
        )
    return value


def apply(config: dict[str, Any], updates: dict[str, Any], source: str, sources: dict[str, str] | None = None) -> None:
    """Set dotted ``updates`` in ``config`` in place; unknown keys fail naming them.
    ``sources`` records where each key's value came from, for error messages."""
    known = flatten(config)
    sections = {k.rsplit(".", 1)[0] for k in known if "." in k}
    for key, value in updates.items():
        if key in sections and isinstance(value, dict):
            apply(config, {f"{key}.{k}": v for k, v in value.items()}, source, sources)
            continue
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(f"unknown config key '{key}' ({source}){suggestion}")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        # the core's keys are checked as a whole by CoreConfig; a method's by the type of its default
        node[leaf] = value if key in CORE_KEYS else _check_type(key, node[leaf], value, source)
        if sources is not None:
            sources[key] = source


CORE_KEYS = set(flatten(DEFAULTS))
# recipe=scratch: the keys a run from random weights needs, where nothing else set them (the
# core defaults are the SMP paper's fine-tuning recipe: lr 0.002, weight decay 5e-3, ...)
SCRATCH = {"epochs": 15, "batch_size": 64, "optimizer.lr": 0.05, "optimizer.weight_decay": 5e-4,
           "lr_schedule.step_every": 10}


def apply_recipe(config: dict[str, Any], sources: dict[str, str]) -> None:
    """Resolve ``recipe``: ``auto`` is ``finetune`` with pretrained weights and ``scratch``
    without; ``scratch`` sets the keys of ``SCRATCH`` that are still at their core default
    (a dataset's defaults, a config file and the command line win)."""
    if config["recipe"] == "auto":
        model = config["model"]
        config["recipe"] = "finetune" if model["pretrained"] or model["pretrained_file"] else "scratch"
    if config["recipe"] == "scratch":
        apply(config, {k: v for k, v in SCRATCH.items() if k not in sources}, "recipe scratch", sources)
def resolve(
    method_defaults: dict[str, Any],
    dataset_defaults: dict[str, Any],
    file_layers: Iterable[tuple[str, dict[str, Any]]],
    overrides: Iterable[str],
    method: str,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Merge the layers in order and check the values the core itself reads.

    ``file_layers`` are (source name, mapping) pairs read from YAML; the source name
    appears in error messages. ``sources``, if given, receives each key set by a layer
    and the layer's name (keys absent from it are defaults).
    """
    config = copy.deepcopy(DEFAULTS)
    config[method] = copy.deepcopy(method_defaults)
    sources = {} if sources is None else sources
    apply(config, flatten(dataset_defaults), "dataset defaults", sources)
    for source, layer in file_layers:
        apply(config, {k: v for k, v in flatten(layer).items() if k not in ("method", "dataset")}, source, sources)
    apply(config, dict(parse_override(o) for o in overrides), "command line", sources)
    config["method"] = method
    refuse_non_finite(config, sources)
    validate(config, sources)
    apply_recipe(config, sources)
    return config


def refuse_non_finite(config: dict[str, Any], sources: dict[str, str]) -> None:
    """No float of any key, the core's or a method's, may be inf or nan: a run would train to
    nan and its record could not be written (JSON has no inf)."""
    for key, value in flatten(config).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"config key '{key}' ({sources.get(key, 'default')}): expects a finite number, "
                                  f"got {item}")


def validate(config: dict[str, Any], sources: dict[str, str] | None = None) -> None:
    """Check the core's keys against ``CoreConfig``; the first fault becomes one line
    naming the key, where its value came from, what is expected and what was given."""
    from noisybench.noise import parse_noise

    core = {k: v for k, v in config.items() if k in DEFAULTS}
    try:
        checked = CoreConfig.model_validate(core)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))  # not a list item's place
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error":  # a cross-key rule of a section: its message names the keys
            key = _cross_key(message, key)
            raise ConfigError(f"config key '{key}' ({(sources or {}).get(key, 'default')}): {message}") from None
        source = (sources or {}).get(key, "default")
        raise ConfigError(f"config key '{key}' ({source}): {message}, got {short_repr(error['input'])}") from None
    config["report"]["trackers"] = list(checked.report.trackers)  # one tracker given as a scalar: a list
    parse_noise(config["noise"])


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message stays one readable line."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = limit
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _cross_key(message: str, fallback: str) -> str:
    """The first dotted key a cross-key error's message names."""
    found = re.search(r"[a-z_]+\.[a-z_]+", message)
    return found.group(0) if found else fallback


def check_nullable(section: str, options: dict[str, Any], types: dict[str, type]) -> None:
    """Type-check a method's options whose default is null (their type cannot be read off
    the default): each may be null or of its type. For plugins' ``noisybench_setup``."""
    for key, kind in types.items():
        value = options.get(key)
        numeric = kind is float and isinstance(value, int)
        if value is not None and (not (isinstance(value, kind) or numeric) or isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"config key '{section}.{key}' expects {kind.__name__} or null, got {value!r}")


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False)
