"""The Python entry points behind the command line: build a config, train a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from noisybench import config as cfg
from noisybench import records
from noisybench.datasets import get_dataset
from noisybench.engine import train
from noisybench.errors import ConfigError, RunInterrupted
from noisybench.plugins import config_defaults, installed_methods, make_plugin_manager


def make_config(
    method: str | None = None,
    dataset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    resume_from: str | Path | None = None,
    plugins: Iterable[Any] = (),
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Resolve defaults < dataset defaults < saved run config (resuming) < YAML file < overrides.

    Sections of other installed methods in a YAML file are ignored, so one file can
    configure every method of a sweep.

    ``method`` and ``dataset`` may come from the arguments, the YAML file or the saved
    config of the run being resumed; the arguments win, and a resumed run cannot change them.
    ``sources`` receives where each key's value came from (absent: the core default).
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if resume_from is not None and (Path(resume_from) / records.CONFIG_FILE).is_file():
        layers.append(("saved run config", cfg.load_yaml(Path(resume_from) / records.CONFIG_FILE)))
    if config_file is not None:
        layers.append(("config file", cfg.load_yaml(config_file)))
    names = {"method": method, "dataset": dataset}
    for key in names:
        for _, layer in layers:
            if names[key] is None and layer.get(key):
                names[key] = layer[key]
        if names[key] is None:
            raise ConfigError(f"no {key} given: pass --{key} NAME or set '{key}:' in the config file")
        if layers and layers[0][0] == "saved run config" and layers[0][1].get(key) not in (None, names[key]):
            raise ConfigError(
                f"cannot resume with {key} '{names[key]}': the run in {resume_from} used '{layers[0][1][key]}'"
            )
    # A YAML file may carry sections for several methods (one file for a whole sweep):
    # only the running method's section applies; a section named after no method still fails.
    others = set(installed_methods()) - {names["method"]}
    layers = [(source, {k: v for k, v in layer.items() if k not in others}) for source, layer in layers]
    pm = make_plugin_manager(names["method"], plugins)
    sources = {} if sources is None else sources
    config = cfg.resolve(
        method_defaults=config_defaults(pm),
        dataset_defaults=get_dataset(names["dataset"]).defaults,
        file_layers=layers,
        overrides=overrides,
        method=names["method"],
        sources=sources,
    )
    config["dataset"] = names["dataset"]
    check_options(pm, config, names["method"], config_defaults(pm), sources)
    return config


def check_options(pm: Any, config: dict[str, Any], method: str, defaults: dict[str, Any],
                  sources: dict[str, str] | None) -> None:
    """The method's own check of its options; a check that trips over a value of another type
    (an option set to null, ``smp.alpha=``) becomes one line naming the option."""
    try:
        pm.hook.noisybench_check_options(options=config[method], config=config)
    except (TypeError, AttributeError) as exc:
        empty = [key for key, value in config[method].items() if value is None and defaults.get(key) is not None]
        where = f"{method}.{empty[0]}" if empty else method
        source = (sources or {}).get(where, "default")
        if empty:
            raise ConfigError(f"config key '{where}' ({source}): expects a value, got null") from None
        raise ConfigError(f"method '{method}': its options could not be checked ({exc})") from None


def default_output(config: dict[str, Any]) -> Path:
    return Path("runs") / config["dataset"] / config["method"] / f"seed{config['seed']}"


def run(
    method: str | None = None,
    dataset: str | None = None,
    output: str | Path | None = None,
    overrides: Iterable[str] = (),
    config_file: str | Path | None = None,
    resume: bool = False,
    plugins: Iterable[Any] = (),
) -> dict[str, Any]:
    """Train one method on one dataset; returns the record written to ``output/metrics.json``.
    A stop (Ctrl-C, SIGTERM) that comes once the record is written no longer interrupts: the
    run is done, and its record is returned."""
    import time

    config = make_config(method, dataset, config_file, overrides, output if resume else None, plugins)
    output = Path(output or default_output(config))
    started = time.time_ns()
    try:
        return train(config, output, resume=resume, plugins=plugins)
    except RunInterrupted:
        record = written_since(output / records.METRICS_FILE, started)
        if record is None:
            raise
        return record


def written_since(path: Path, since_ns: int) -> dict[str, Any] | None:
    """The record at ``path`` if it was written at or after ``since_ns`` (time.time_ns)."""
    try:
        if path.stat().st_mtime_ns < since_ns:
            return None
    except OSError:
        return None
    return records.read_record(path)


def describe_config(method: str | None, dataset: str | None, config_file: str | Path | None = None,
                    overrides: Iterable[str] = (), plugins: Iterable[Any] = ()) -> str:
    """``noisybench config``: the resolved config, each value's source and each method option's meaning."""
    from noisybench.introspect import describe, option_help

    sources: dict[str, str] = {}
    config = make_config(method, dataset, config_file, overrides, plugins=plugins, sources=sources)
    return describe(config, sources, option_help(config["method"]))


def dry_run(method: str | None, dataset: str | None, config_file: str | Path | None = None,
            overrides: Iterable[str] = (), plugins: Iterable[Any] = ()) -> str:
    """``noisybench run --dry-run``: build the data, model, loaders and the method's setup as a
    run would, train nothing, write nothing; the config (as built: ``auto`` values resolved)
    and what was built."""
    import tempfile

    from accelerate.state import AcceleratorState, GradientState

    from noisybench.engine import Trainer
    from noisybench.introspect import describe, dry_run_summary, option_help

    sources: dict[str, str] = {}
    config = make_config(method, dataset, config_file, overrides, plugins=plugins, sources=sources)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            trainer = Trainer(config, Path(scratch), plugins)
            trainer.pm.hook.noisybench_setup(run=trainer.run)
            return describe(trainer.config, sources, option_help(config["method"])) + "\n\n" + dry_run_summary(trainer)
    finally:
        AcceleratorState._reset_state()
        GradientState._reset_state()
