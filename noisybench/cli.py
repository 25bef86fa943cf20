"""The ``noisybench`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from noisybench import __version__
from noisybench.errors import NoisybenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisybench", description="Train and compare methods for learning from noisy labels."
    )
    parser.add_argument("--version", action="version", version=f"noisybench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="train one method on one dataset",
        description="Train one method on one dataset. Extra key=value arguments override the config, "
        "e.g. noise=symmetric:0.4 optimizer.lr=0.01 epochs=5.",
    )
    run.add_argument("--method", help="method name (see `noisybench methods`)")
    run.add_argument("--dataset", help="dataset name (see `noisybench datasets`)")
    run.add_argument("--config", help="YAML file of config keys")
    run.add_argument("--output", help="run folder (default runs/<dataset>/<method>/seed<seed>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")

    commands.add_parser("methods", help="list installed methods and the package each comes from")
    commands.add_parser("datasets", help="list registered datasets")
    data = commands.add_parser("data", help="work with datasets").add_subparsers(dest="data_command", required=True)
    check = data.add_parser(
        "check",
        help="validate a copy of a dataset",
        description="Read a dataset as a run would, check every image file and print counts per split and "
        "class, the noisy-label accuracy where known, and warnings. Exit status 1 if problems were found.",
    )
    check.add_argument("--dataset", required=True, help="dataset name")
    check.add_argument("--config", help="YAML file of config keys")
    check.add_argument("--decode", action="store_true", help="also decode every image (slow)")
    return parser


def cmd_run(args: argparse.Namespace, overrides: list[str]) -> None:
    from noisybench.api import run

    if args.resume and not args.output:
        raise NoisybenchError("--resume needs --output DIR, the folder of the run to continue")
    result = run(args.method, args.dataset, args.output, overrides, args.config, args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    test, best = result["test"], result["best_val"]
    line = f"done: test accuracy {test['accuracy']:.4f} (last epoch)"
    if best["test_accuracy"] is not None:
        line += f", {best['test_accuracy']:.4f} at best val epoch {best['epoch']}"
    line += f"; {result['efficiency']['total_seconds']:.1f}s"
    print(line)


def cmd_data_check(args: argparse.Namespace, overrides: list[str]) -> int:
    from noisybench.api import make_config
    from noisybench.datacheck import check

    config = make_config("ce", args.dataset, args.config, overrides)
    report, problems = check(config, decode=args.decode)
    print(report)
    return 1 if problems else 0


def cmd_methods() -> None:
    from noisybench.plugins import installed_methods, method_description

    for info in installed_methods().values():
        print(f"{info.name:<16} {info.package} {info.version:<10} {method_description(info)}")


def cmd_datasets() -> None:
    from noisybench.datasets import list_datasets

    for info in list_datasets():
        print(f"{info.name:<16} {info.description}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    if unknown or (overrides and args.command not in ("run", "data")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    try:
        if args.command == "run":
            cmd_run(args, overrides)
        elif args.command == "data":
            return cmd_data_check(args, overrides)
        elif args.command == "methods":
            cmd_methods()
        else:
            cmd_datasets()
    except NoisybenchError as exc:
        print(f"noisybench: error: {exc}", file=sys.stderr)
        return 2
    return 0
