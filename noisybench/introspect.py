"""``noisybench config`` and ``run --dry-run``: what a run would be, before it runs.

The resolved config is printed as YAML, each value followed by where it came from
(``default``, ``dataset defaults``, ``recipe scratch``, ``config file``, ``command line``,
``saved run config``) and, for the method's options, what the option means (the plugin's
``OPTION_HELP``). A dry run also builds the data, model and loaders, and says what it found.
"""

from __future__ import annotations

from typing import Any

import yaml


def scalar(value: Any) -> str:
    """A value as YAML writes it on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def option_help(method: str) -> dict[str, str]:
    """The method plugin's ``OPTION_HELP`` (option -> meaning), empty if it has none."""
    from noisybench.plugins import load_method

    return dict(getattr(load_method(method), "OPTION_HELP", {}) or {})


def describe(config: dict[str, Any], sources: dict[str, str], meanings: dict[str, str]) -> str:
    """The config as YAML with a comment per value: its source, and for a method option its meaning."""
    from noisybench.config import DEFAULTS, flatten

    method = config["method"]
    defaults = flatten(DEFAULTS)
    lines: list[str] = []

    def walk(node: dict[str, Any], prefix: str, indent: int) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value:
                lines.append(f"{'  ' * indent}{key}:")
                walk(value, f"{path}.", indent + 1)
                continue
            note = sources.get(path) or ("default" if defaults.get(path, value) == value
                                         else f"default {scalar(defaults[path])}, resolved")
            if path.startswith(f"{method}.") and key in meanings:
                note += f"; {meanings[key]}"
            lines.append(f"{'  ' * indent}{key}: {scalar(value)}  # {note}")

    walk({k: v for k, v in config.items() if k not in ("method", "dataset")}, "", 0)
    return f"method: {method}\ndataset: {config['dataset']}\n" + "\n".join(lines)


def dry_run_summary(trainer: Any) -> str:
    """What a built run holds: data per split, what is known of the truth, model, loaders, device."""
    from noisybench import identity
    from noisybench.datasets import labels_of

    splits, run = trainer.splits, trainer.run
    sizes = ", ".join(f"{name} {len(labels_of(getattr(splits, name)))}" for name in ("train", "val", "test", "clean")
                      if getattr(splits, name) is not None)
    flags = splits.is_noisy()
    known = "no true labels" if flags is None else f"truth known for {int((flags >= 0).sum())} of {len(flags)}"
    options = run.loader_options
    lines = [
        trainer.choices["line"],
        f"data: {trainer.config['dataset']}, {splits.num_classes} classes, {sizes}; noise {splits.noise.type}; {known}",
        f"model: {trainer.config['model']['name']}"
        + (f" × {1 + len(run.networks)} networks" if run.networks else "")
        + f", {trainer.all_parameters():,} parameters, "
        f"{trainer.choices['input_size']}-pixel inputs, {splits.channels} channel(s)",
        f"loaders: batch {trainer.config['batch_size']}, {options['num_workers']} workers, pinned "
        f"{options['pin_memory']}; device {trainer.accelerator.device}, mixed precision "
        f"{trainer.accelerator.mixed_precision}, {trainer.accelerator.num_processes} process(es)",
        f"experiment fingerprint: {identity.fingerprint(trainer.experiment)}",
        "dry run: nothing was trained or written",
    ]
    return "\n".join(lines)
