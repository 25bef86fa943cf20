"""SMP in its paper's setting on real images: ImageNet-pretrained EfficientNet-Lite0 fine-tuned
on the Fashion-MNIST subset under synthetic noise, beside cross-entropy, the other shipped
methods and SMP's departures; or the same rows from scratch (``--recipe scratch``).

    python benchmarks/fashion_mnist.py /tmp/fashion --train 4000 --test 1000
    noisybench weights convert efficientnet-lite0-57934424.pth --model efficientnet_lite0 \
        --output lite0.safetensors
    python benchmarks/smp_finetune.py OUT --manifest /tmp/fashion/manifest.csv --weights lite0.safetensors

``--recipe finetune`` (default): ``efficientnet_lite0`` from ``--weights``, 48-pixel inputs
(the grey images as three equal channels, resized: the smallest size whose linear probe
keeps the pretrained features' lead, benchmarks/finetune_input_size.py), laid out channels
last (``model.channels_last=true``: a training step 1.8x faster on one CPU thread than
NCHW, 0.17 s against 0.31 s for a batch of 32), the paper's SGD
(momentum 0.9, weight decay 5e-3, lr ÷10 during training) scaled to what a 2-core CPU
fine-tunes in half an hour (~8 images/s): ``--epochs`` 3, lr ÷10 after epoch 2
(``--step-every``), batch 32 instead of 128 (3,600 images give a batch of 128 only 28 steps
an epoch; one epoch at batch 32 and lr 0.01 reached 60% test accuracy under 40% noise, at
batch 128 and lr 0.03 33%) and lr 0.01 instead of 0.002 (the paper's ~300× more steps per
epoch on Clothing1M); SMP corrects from epoch 2 (``smp.start_epoch=2``: the pretrained
model is ready at once).
``--recipe scratch``: every default, as benchmarks/defaults_from_scratch.py (small_cnn at
28 pixels, 15 epochs). Each run uses one thread.

Runs go to OUT/<recipe>/<noise>/<row>/seed<k>, seed by seed (every row and noise of seed 0
first), in the main process (``data.num_workers=0``: 28-pixel PNGs decode in microseconds,
workers would only add processes); finished runs are read back, interrupted
ones resume, and one held by another process (a second copy of this command running beside
it) is left to it, so two copies share the grid. The tables (OUT/<recipe>/table.md) are
built from the runs finished so far: test accuracy, the training labels' accuracy (noisy →
final), the changed fraction, and per correction epoch the training-label accuracy of SMP's
y_hat, of the network's argmax and of a 10-NN vote in its feature space (mean over seeds).
``--tiny`` runs two epochs on 200 training images to try the script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from noisybench.api import run
from noisybench.records import write_text
from noisybench.lock import RunLocked

SIDE_INFO = Path(__file__).parent / "side_info" / "fashion_mnist.yaml"
# row label -> (method, setting, overrides); in the order they run: ce and smp first
ROWS = {
    "ce": ("ce", "noisy", []),
    "smp": ("smp", "noisy", []),
    "smp network_candidates": ("smp", "noisy", ["smp.network_candidates=true"]),
    "smp centre_features": ("smp", "noisy", ["smp.centre_features=true"]),
    "smp num_prototypes=128": ("smp", "noisy", ["smp.num_prototypes=128"]),
    "smp agreeing_candidates": ("smp", "noisy", ["smp.agreeing_candidates=true"]),
    "smp change_margin=0.15": ("smp", "noisy", ["smp.change_margin=0.15"]),
    "smp max_changed=null": ("smp", "noisy", ["smp.max_changed=null"]),
    "smp network_candidates max_changed=null": ("smp", "noisy", ["smp.network_candidates=true",
                                                                 "smp.max_changed=null"]),
    "smp num_prototypes=128 max_changed=null": ("smp", "noisy", ["smp.num_prototypes=128", "smp.max_changed=null"]),
    "sinet": ("sinet", "noisy", [f"sinet.side_info={SIDE_INFO}"]),
    "elr": ("elr", "noisy", []),
    "lsw (clean)": ("lsw", "clean", []),
    "coteaching": ("coteaching", "noisy", []),
    "dividemix": ("dividemix", "noisy", []),
}
NOISES = ("symmetric:0.2", "symmetric:0.4", "asymmetric:0.4")


def recipe_overrides(args: argparse.Namespace, method: str) -> list[str]:
    """What the recipe sets; the rest are the defaults."""
    common = [f"data.root={args.manifest}", "threads=1", "progress=false", "data.num_workers=0"]
    if args.recipe == "scratch":
        return common
    third = max(1, args.epochs // 3)
    overrides = [*common, "model.name=efficientnet_lite0", f"model.pretrained_file={args.weights}",
                 "model.channels_last=true",
                 f"data.image_size={args.image_size}", f"epochs={args.epochs}", f"optimizer.lr={args.lr}",
                 f"batch_size={args.batch_size}", f"lr_schedule.step_every={args.step_every}"]
    if method == "smp":
        overrides.append("smp.start_epoch=2")
    if method == "coteaching":  # Co-teaching's T_k (10 of 200 epochs): the forget rate reached by a third
        overrides.append(f"coteaching.num_gradual={third}")
    if method == "dividemix":  # the authors' Clothing1M warm-up for a pretrained network: one epoch
        overrides.append("dividemix.warm_up=1")
    return overrides


def tiny_overrides(args: argparse.Namespace) -> list[str]:
    return ["epochs=2", "data.epoch_subset=200", "smp.start_epoch=1"] if args.tiny else []


def one_run(args: argparse.Namespace, noise: str, row: str, seed: int) -> dict | None:
    """The run's record, or None if another process holds it."""
    method, setting, extra = ROWS[row]
    folder = args.output / args.recipe / noise / row.replace(" ", "_") / f"seed{seed}"
    overrides = [f"noise={noise}", f"seed={seed}", f"setting={setting}", *recipe_overrides(args, method), *extra,
                 *[o for o in tiny_overrides(args) if not o.startswith("smp.") or method == "smp"]]
    try:
        return run(method, "csv", folder, overrides, resume=True)
    except RunLocked:
        return None


def cell(values: list[float | None], digits: int = 1, scale: float = 100) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = f"{scale * np.mean(values):.{digits}f}"
    return f"{mean} ± {scale * np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else mean


def correction_line(records: list[dict]) -> str:
    """Per correction epoch, then of the final model: y_hat / argmax / k-NN label accuracy and
    the share of labels y_hat would change (accepted or not), mean over seeds."""
    parts = []
    epochs = sorted({h["epoch"] for r in records for h in r["history"] if "smp_yhat_accuracy" in h})
    entries = {f"e{e}": ("smp", [h for r in records for h in r["history"] if h["epoch"] == e
                                 and "smp_yhat_accuracy" in h]) for e in epochs}
    entries["final"] = ("smp_final", [h for r in records for h in r["history"] if "smp_final_yhat_accuracy" in h])
    for name, (prefix, found) in entries.items():
        if found:
            means = [np.mean([h[f"{prefix}_{k}"] for h in found])
                     for k in ("yhat_accuracy", "argmax_accuracy", "knn_accuracy", "would_change")]
            parts.append(f"{name} {means[0]:.2f}/{means[1]:.2f}/{means[2]:.2f} ({100 * means[3]:.0f}%)")
    return "; ".join(parts) or "–"


def table(found: dict[tuple[str, str], list[dict]]) -> str:
    lines = ["| noise | method | seeds | test acc | label acc: noisy → final | changed | per correction: ŷ / argmax / 10-NN label acc (ŷ would change) |",
             "|---|---|---|---|---|---|---|"]
    for (noise, row), records in found.items():
        labels = [r["labels"] for r in records]
        final = [lab["corrected_accuracy"] if lab["corrected_accuracy"] is not None else lab["noisy_accuracy"]
                 for lab in labels]
        lines.append(f"| {noise} | {row} | {len(records)} | {cell([r['test']['accuracy'] for r in records])} "
                     f"| {cell([lab['noisy_accuracy'] for lab in labels])} → {cell(final)} "
                     f"| {cell([lab['changed_fraction'] for lab in labels])} "
                     f"| {correction_line(records) if ROWS[row][0] == 'smp' else '–'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="--recipe finetune: the converted EfficientNet-Lite0 weights")
    parser.add_argument("--recipe", choices=("finetune", "scratch"), default="finetune")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row labels, in the order to run")
    parser.add_argument("--noises", default=",".join(NOISES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--step-every", type=int, default=2, help="lr ÷10 every this many epochs")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--tiny", action="store_true", help="2 epochs on 200 images: try the script")
    parser.add_argument("--table-only", action="store_true", help="build the table from the finished runs only")
    args = parser.parse_args()
    if args.recipe == "finetune" and not args.weights:
        parser.error("--recipe finetune needs --weights (noisybench weights convert ...)")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    noises, seeds = args.noises.split(","), [int(s) for s in args.seeds.split(",")]
    found: dict[tuple[str, str], list[dict]] = {}
    for seed in seeds:  # every row and noise of a seed before the next seed: a whole table early
        for noise in noises:
            for row in rows:
                record = finished(args, noise, row, seed) if args.table_only else one_run(args, noise, row, seed)
                if record is not None:
                    found.setdefault((noise, row), []).append(record)
                    print(f"{args.recipe} {noise} {row} seed{seed}: test {record['test']['accuracy']:.4f}", flush=True)
    order = {noise: i for i, noise in enumerate(noises)}
    text = table(dict(sorted(found.items(), key=lambda item: (order[item[0][0]], rows.index(item[0][1])))))
    write_text(args.output / args.recipe / "table.md", text)
    print(text)


def finished(args: argparse.Namespace, noise: str, row: str, seed: int) -> dict | None:
    import json

    path = args.output / args.recipe / noise / row.replace(" ", "_") / f"seed{seed}" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


if __name__ == "__main__":
    main()
