"""The ``noisybench`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from noisybench import __version__
from noisybench.errors import NoisybenchError


def dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """--dataset and --config, as every `data` subcommand takes them."""
    parser.add_argument("--dataset", required=True, help="dataset name")
    parser.add_argument("--config", help="YAML file of config keys")


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """compare's launcher and resources (checked by launchers.parse_resources)."""
    parser.add_argument("--launcher", default="local", choices=["local", "slurm"],
                        help="local: on this machine (default); slurm: one Slurm job per run, through submitit")
    parser.add_argument("--jobs", help="runs at once (local default 1, in this process; slurm default: all)")
    parser.add_argument("--gpus-per-run", help="GPUs of each run, one process each (local default 1 where there "
                        "are GPUs; slurm default 1)")
    parser.add_argument("--cpus-per-run", help="slurm: CPUs of each run")
    parser.add_argument("--partition", help="slurm: partition")
    parser.add_argument("--account", help="slurm: account to charge")
    parser.add_argument("--time", help="slurm: each job's time limit (minutes or [D-]HH:MM:SS); a longer run requeues")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="slurm: any other submitit Slurm parameter, e.g. --slurm mem=64G --slurm qos=high")
    parser.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then print the leaderboard")


OVERRIDES_HELP = ("key=value ...: config keys that override the defaults and --config, e.g. epochs=5 "
                  "optimizer.lr=0.01 noise=symmetric:0.4 smp.alpha=0.4; every key: `noisybench config` or docs/config.md")


def takes_overrides(parser: argparse.ArgumentParser) -> None:
    """Show ``[key=value ...]`` in the usage line and say what it means below the options
    (the overrides are the arguments argparse leaves over: main() collects them)."""
    usage = parser.format_usage().removeprefix("usage: ").rstrip()
    parser.usage = f"{usage} [key=value ...]"
    parser.epilog = OVERRIDES_HELP


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisybench", description="Train and compare methods for learning from noisy labels."
    )
    parser.add_argument("--version", action="version", version=f"noisybench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    add_run_commands(commands)
    add_sweep_commands(commands)
    add_run_folder_commands(commands)
    add_listing_and_data_commands(commands)
    add_weights_commands(commands)
    return parser


def add_weights_commands(commands: argparse._SubParsersAction) -> None:
    """``weights convert``."""
    weights = commands.add_parser("weights", help="pretrained weights").add_subparsers(dest="weights_command",
                                                                                      required=True)
    convert = weights.add_parser(
        "convert",
        help="pretrained weights of another layout as a safetensors file that model.pretrained_file loads",
        description="Read SRC (.pth/.pt/.bin as tensors only, or .safetensors) and write its tensors in timm's key "
        "names for --model: by name where the names are timm's, else by order where every shape matches one to "
        "one; refused otherwise, naming the first tensor that does not fit.",
    )
    convert.add_argument("source", metavar="SRC", help="the checkpoint to convert")
    convert.add_argument("--model", required=True, help="timm model name, e.g. efficientnet_lite0")
    convert.add_argument("--output", required=True, help="the .safetensors file to write")


def add_run_commands(commands: argparse._SubParsersAction) -> None:
    """``run`` and ``config``."""
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
    run.add_argument("--dry-run", action="store_true",
                     help="build data, model and loaders, print the config and what was built; train nothing")
    show = commands.add_parser(
        "config", help="the resolved config: every key, its value, where it came from, the method's options' meaning",
        description="Resolve a run's config as `run` would (defaults < dataset defaults < --config < key=value) "
        "and print it as YAML, each value commented with its source and, for the method's options, their meaning.")
    show.add_argument("--method", help="method name")
    show.add_argument("--dataset", help="dataset name")
    show.add_argument("--config", help="YAML file of config keys")
    takes_overrides(run)
    takes_overrides(show)


def add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    """``compare`` and ``leaderboard``."""
    compare = commands.add_parser(
        "compare",
        help="run a method x seed sweep (resumable) and print a leaderboard",
        description="Run every method with every seed on one dataset under OUTPUT/<dataset>/<method>/seed<k>/: "
        "one after another in this process (default), --jobs N at once on this machine, or as Slurm jobs "
        "(--launcher slurm). Finished runs are skipped, interrupted ones resume, failed ones "
        "are recorded and the sweep goes on. key=value arguments apply to every run (a method's section only "
        "to that method).",
    )
    compare.add_argument("--methods", required=True, help="comma-separated method names")
    compare.add_argument("--dataset", required=True, help="dataset name (see `noisybench datasets`)")
    compare.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    compare.add_argument("--config", help="YAML file of config keys for every run")
    compare.add_argument("--output", required=True, help="sweep folder")
    sweep_arguments(compare)
    takes_overrides(compare)
    follow = commands.add_parser(
        "status", help="where each run of a sweep stands: recorded, running (epoch), failed (error), pending, held",
        description="Read a sweep folder (its sweep.json and run folders) and print each run's state and job id: "
        "recorded, running with its epoch, failed with its error, pending (with the epochs saved), or held by a "
        "process of no job of the sweep. Imports no torch: fast enough to run in a loop.")
    follow.add_argument("folder", help="the sweep folder (compare --output)")

    board = commands.add_parser(
        "leaderboard", help="tables of mean ± std over seeds from run records",
        description="Read every run record under FOLDER and print one row per method and experiment: mean ± std "
        "over seeds of the test accuracy and the other scores, with paper numbers joined where the setting matches. "
        "The table goes to stdout (or --output); every message goes to stderr.")
    board.add_argument("folder", help="a folder of runs (searched recursively for metrics.json)")
    board.add_argument("--format", default="markdown", choices=["markdown", "csv", "latex", "html"],
                       help="table format (default markdown)")
    board.add_argument("--output", help="write to this file instead of printing")
    board.add_argument("--reference", help="paper numbers to join (default benchmarks/reference.csv)")
    board.add_argument("--plots", help="also draw accuracy_vs_time.png and label_curves.png into this folder")
    board.add_argument("--force", action="store_true", help="allow --output to replace a run's own record")


def add_run_folder_commands(commands: argparse._SubParsersAction) -> None:
    """``evaluate``, ``export`` and ``predict``: commands on a finished run's folder."""
    evaluate = commands.add_parser(
        "evaluate",
        help="score a run's final checkpoint again (test, val or train split)",
        description="Rebuild a run's data and model from RUN_DIR/config.yaml, load its final checkpoint and score a "
        "split as the run did. For test (and val) it says whether the scores equal metrics.json; exit status 1 if "
        "not. Runs under torchrun / accelerate launch too, with the same result.",
    )
    evaluate.add_argument("run_dir", help="a finished run's folder")
    evaluate.add_argument("--split", default="test", choices=["test", "val", "train"],
                          help="the split to score (default test)")
    evaluate.add_argument("--features", help="also write the split's pooled features to this .npy file")
    evaluate.add_argument("--force", action="store_true", help="allow --features to replace a run's own record")

    export = commands.add_parser(
        "export", help="a run's samples sorted by suspicion, to clean data with",
        description="Write every sample of a finished run, training rows first, most suspect first: by the "
        "method's noise_score (else its flagged samples, else the training loss), or with --folds by the "
        "out-of-sample cv_noise_score; then val and test rows scored by the final model. noisy_label, "
        "corrected_label and predicted_label are class ids (integers); noisy_class and corrected_class their names.")
    export.add_argument("run_dir", help="a finished run's folder")
    export.add_argument("--format", default="csv", choices=["csv", "parquet"], help="file format (default csv)")
    export.add_argument("--output", help="file to write (default RUN_DIR/suspects.<format>)")
    export.add_argument("--folds", type=int, default=0,
                        help="also score every training sample out of sample: K runs of the run's config, each "
                        "trained without one fold (RUN_DIR/folds/); key=value arguments change their config")
    export.add_argument("--force", action="store_true", help="allow --output to replace a run's own record")
    takes_overrides(export)

    predict = commands.add_parser(
        "predict", help="a trained run's predictions (and label noise scores) for new images",
        description="Rebuild a run's model from RUN_DIR (model.json, best/ or checkpoint/) and predict every image "
        "of --input (a folder, or a CSV with a path column and optionally label). Writes one row per image: the "
        "predicted class, every class's probability and, for labelled input, noise_score = 1 - p(label).")
    predict.add_argument("run_dir", help="a trained run's folder")
    predict.add_argument("--input", required=True, help="a folder of images or a CSV (path[,label])")
    predict.add_argument("--weights", default="best", choices=["best", "last"],
                         help="best val epoch (default) or the last epoch")
    predict.add_argument("--output", required=True, help="CSV file to write")
    predict.add_argument("--batch-size", type=int, default=256, help="images a batch (default 256)")
    predict.add_argument("--force", action="store_true", help="allow --output to replace a run's own record")


def add_listing_and_data_commands(commands: argparse._SubParsersAction) -> None:
    """``methods``, ``datasets`` and ``data check|prepare|bench``."""
    commands.add_parser("methods", help="list installed methods and the package each comes from")
    commands.add_parser("datasets", help="list registered datasets")
    data = commands.add_parser("data", help="work with datasets").add_subparsers(dest="data_command", required=True)
    check = data.add_parser(
        "check",
        help="validate a copy of a dataset",
        description="Read a dataset as a run would, check every image file and print counts per split and "
        "class, the noisy-label accuracy where known, and warnings. Exit status 1 if problems were found.",
    )
    dataset_arguments(check)
    check.add_argument("--decode", action="store_true", help="also decode every image (slow)")
    prepare = data.add_parser(
        "prepare",
        help="write a dataset's splits once, resized, as tar shards that decode several times faster",
        description="Read a dataset as a run would and write its training, val, test and clean splits to OUTPUT, "
        "resized to the pipeline's short edge (256 for data.image_size=224), as webdataset tar shards with each "
        "item's labels and original path in manifest.json. Train on them with data.prepared=OUTPUT. Run the same "
        "command again to finish an interrupted preparation.",
    )
    dataset_arguments(prepare)
    prepare.add_argument("--output", required=True, help="folder to write")
    prepare.add_argument("--workers", type=int, help="processes encoding images (default: every core)")
    bench = data.add_parser(
        "bench",
        help="images per second of the training loader, per process and per worker",
        description="Build the training loader as a run would and time it: one worker's read+decode, transform "
        "and collate per image, then the loader with its workers over --batches batches.",
    )
    dataset_arguments(bench)
    bench.add_argument("--batches", type=int, default=50, help="batches to time (default 50)")
    for parser in (check, prepare, bench):
        takes_overrides(parser)


def cmd_run(args: argparse.Namespace, overrides: list[str]) -> None:
    from pathlib import Path

    from noisybench.api import run
    from noisybench.outputs import is_run_folder

    if args.resume and not args.output:
        raise NoisybenchError("--resume needs --output DIR, the folder of the run to continue")
    if args.resume and not (Path(args.output).is_dir() and is_run_folder(Path(args.output))):
        raise NoisybenchError(f"--resume: {args.output} holds no run to continue (no config.yaml, checkpoint or "
                              "metrics.json); leave out --resume to start one there")
    if args.dry_run:
        from noisybench.api import dry_run

        print(dry_run(args.method, args.dataset, args.config, overrides))
        return
    result = run(args.method, args.dataset, args.output, overrides, args.config, args.resume)
    ignore_sigterm()  # the record is written: a stop now changes nothing
    if int(os.environ.get("RANK", "0")) != 0:
        return
    test, best = result["test"], result["best_val"]
    line = f"done: test accuracy {test['accuracy']:.4f} (last epoch)"
    if best["test_accuracy"] is not None:
        line += f", {best['test_accuracy']:.4f} at best val epoch {best['epoch']}"
    line += f"; {result['efficiency']['total_seconds']:.1f}s"
    print(line)


def cmd_data(args: argparse.Namespace, overrides: list[str]) -> int:
    from noisybench.api import make_config

    if args.data_command == "bench" and args.batches < 1:
        raise NoisybenchError(f"--batches {args.batches}: time at least one batch")
    if args.data_command == "prepare" and args.workers is not None and args.workers < 1:
        raise NoisybenchError(f"--workers {args.workers}: at least one process encodes the images")
    config = make_config("ce", args.dataset, args.config, overrides)
    if args.data_command == "prepare":
        from pathlib import Path

        from noisybench.prepare import prepare, summary

        print(summary(prepare(config, args.output, args.workers), Path(args.output)))
        return 0
    if args.data_command == "bench":
        from noisybench.databench import bench

        print(bench(config, args.batches))
        return 0
    from noisybench.datacheck import check

    report, problems = check(config, decode=args.decode)
    print(report)
    return 1 if problems else 0


def cmd_compare(args: argparse.Namespace, overrides: list[str]) -> int:
    from pathlib import Path

    from noisybench import leaderboard, records
    from noisybench.compare import summary
    from noisybench.launchers import launch, parse_resources

    seeds = listed("--seeds", args.seeds, int, "integers")
    methods = listed("--methods", args.methods, str.strip, "method names")
    resources = parse_resources(args.launcher, args.jobs, args.gpus_per_run, args.cpus_per_run, args.partition,
                                args.account, args.time, args.slurm, args.wait)
    outcomes = launch(methods, args.dataset, seeds, args.output, resources, overrides, args.config)
    if outcomes is None:  # submitted to Slurm, not waited for
        return 0
    print(summary(outcomes))
    folder = Path(args.output)
    if any(o.status != "failed" for o in outcomes):
        text = leaderboard.report(folder / args.dataset)
        records.write_text(folder / "leaderboard.md", text)
        plots = leaderboard.write_plots(leaderboard.load_runs(folder / args.dataset), folder)
        print()
        print(text)
        print(f"wrote the leaderboard to {folder / 'leaderboard.md'}"
              + (f" and plots to {', '.join(str(p) for p in plots)}" if plots else ""))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def listed(option: str, text: str, convert, what: str) -> list:
    """A comma-separated list of at least one item, none twice."""
    try:
        items = [convert(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NoisybenchError(f"{option} {text}: expected comma-separated {what}") from None
    if not items:
        raise NoisybenchError(f"{option} '{text}': no {what} given")
    twice = sorted({str(item) for item in items if items.count(item) > 1})
    if twice:
        raise NoisybenchError(f"{option} {text}: {', '.join(twice)} given twice")
    return items


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from pathlib import Path

    from noisybench import leaderboard, records
    from noisybench.outputs import check_output_file

    output = check_output_file(args.output, args.force) if args.output is not None else None
    if args.plots is not None:
        plots = Path(args.plots)
        if not args.plots.strip() or (plots.exists() or plots.is_symlink()) and not plots.is_dir():
            raise NoisybenchError(f"--plots {args.plots}: not a folder")
    text = leaderboard.report(args.folder, args.format, args.reference)
    if output:
        records.write_text(output, text)
    else:
        print(text, end="")
    if args.plots:
        for path in leaderboard.write_plots(leaderboard.load_runs(args.folder), Path(args.plots)):
            print(f"wrote {path}", file=sys.stderr)  # stdout is the table alone: `> board.csv` stays a CSV


def cmd_evaluate(args: argparse.Namespace) -> int:
    from noisybench.evaluate import evaluate, summary
    from noisybench.outputs import check_output_file

    features = check_output_file(args.features, args.force, "--features") if args.features is not None else None
    result = evaluate(args.run_dir, args.split, features)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary(result))
    return 0 if result.get("matches_record", True) else 1


def cmd_predict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from noisybench import records
    from noisybench.outputs import check_output_file
    from noisybench.predict import predict, summary

    if args.batch_size < 1:
        raise NoisybenchError(f"--batch-size {args.batch_size}: at least one image a batch")
    output = check_output_file(args.output, args.force)
    table = predict(args.run_dir, args.input, args.weights, args.batch_size)
    records.write_csv(output, table)
    print(summary(table, Path(args.output), args.weights))


def cmd_export(args: argparse.Namespace, overrides: list[str]) -> None:
    from noisybench.export import export
    from noisybench.outputs import check_output_file

    if args.folds < 0 or args.folds == 1:
        raise NoisybenchError(f"--folds {args.folds}: 0 (none) or at least 2 folds")
    output = check_output_file(args.output, args.force) if args.output is not None else None
    print(f"wrote {export(args.run_dir, args.format, output, args.folds, overrides)}")


def cmd_methods() -> None:
    from noisybench.plugins import installed_methods, method_description

    for info in installed_methods().values():
        print(f"{info.name:<16} {info.package} {info.version:<10} {method_description(info)}")


def cmd_datasets() -> None:
    from noisybench.datasets import list_datasets

    for info in list_datasets():
        print(f"{info.name:<16} {info.description}")


def unrecognized(arguments: list[str]) -> str:
    """The parser's complaint, with a hint where a config key was written as a flag."""
    message = f"unrecognized arguments: {' '.join(arguments)}"
    flag = next((a for a in arguments if a.startswith("--")), None)
    if flag is not None:
        key = flag[2:].split("=", 1)[0].replace("-", "_")
        message += f"; config keys are given as key=value, e.g. {key}=..." if key else ""
    return message


def own_message(exc: NoisybenchError) -> str:
    """The error's message; one raised in a loader worker arrives wrapped in torch's report
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): its own line."""
    text = str(exc)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith("noisybench.") and ": " in last else last
    return text


def ignore_sigterm() -> None:
    """Once a run's record is written, SIGTERM changes nothing: the command ends with status 0."""
    import signal

    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def refuse_empty_paths(args: argparse.Namespace) -> None:
    """An empty path argument would mean the current folder: refuse it, naming the option."""
    for name in ("output", "input", "folder", "run_dir", "config", "reference", "plots", "features"):
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise NoisybenchError(f"{'--' + name if name not in ('folder', 'run_dir') else name.upper()}: an empty path")


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's stop) ends a run as Ctrl-C does: saved epochs kept, one line."""
    import signal

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("terminated")

    try:
        signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (an embedding program): leave its handler alone
        pass


def one_process_note() -> str | None:
    """``accelerate launch --cpu --num_processes 2`` starts ONE process (Accelerate's simple
    launcher: it sets MASTER_PORT for the processes asked for, but no WORLD_SIZE): say so."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1", "yes")
    if cpu and os.environ.get("MASTER_PORT") and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return ("noisybench: note: `accelerate launch --cpu` runs one process here, whatever --num_processes says; "
                "for several CPU processes use `torchrun --nproc_per_node N -m noisybench ...` (they join over gloo)")
    return None


def dispatch(args: argparse.Namespace, overrides: list[str]) -> int:
    """Run the parsed command; its exit status."""
    refuse_empty_paths(args)
    note = one_process_note() if args.command in ("run", "evaluate") else None
    if note:
        print(note, file=sys.stderr)
    if args.command == "run":
        cmd_run(args, overrides)
    elif args.command == "data":
        return cmd_data(args, overrides)
    elif args.command == "compare":
        return cmd_compare(args, overrides)
    elif args.command == "status":
        from noisybench.status import report, status

        print(report(status(args.folder)))
    elif args.command == "leaderboard":
        cmd_leaderboard(args)
    elif args.command == "evaluate":
        return cmd_evaluate(args)
    elif args.command == "export":
        cmd_export(args, overrides)
    elif args.command == "predict":
        cmd_predict(args)
    elif args.command == "config":
        from noisybench.api import describe_config

        print(describe_config(args.method, args.dataset, args.config, overrides))
    elif args.command == "methods":
        cmd_methods()
    elif args.command == "weights":
        from noisybench.weights import convert

        print(convert(args.source, args.model, args.output))
    else:
        cmd_datasets()
    return 0


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    if unknown or (overrides and args.command not in ("run", "data", "compare", "config", "export")):
        parser.error(unrecognized(unknown or overrides))
    previous = signal.getsignal(signal.SIGTERM)
    if args.command in ("run", "compare"):
        stop_on_sigterm()
    try:
        return dispatch(args, overrides)
    except NoisybenchError as exc:
        print(f"noisybench: error: {own_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, a read-only or missing folder: name the path, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"noisybench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"noisybench: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        try:  # a program that calls main() gets its own SIGTERM handling back
            signal.signal(signal.SIGTERM, previous)
        except (ValueError, TypeError):  # not the main thread, or a handler set outside Python
            pass
