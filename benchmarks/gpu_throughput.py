"""The GPU path in one command: training images/s, method step ratios, relabelling, peak memory.

On a CUDA machine, in one run:
  1. ResNet-50, bf16 autocast, channels_last, CE training steps on synthetic uint8 images
     already on the GPU: the compute ceiling (images/s).
  2. The same through noisybench's real loader and loop (`noisybench run`, ce, 3 epochs) on a
     fixture of photo-like JPEGs (half 800x600, half 500x500) as raw files and prepared
     (`data prepare`): training images/s of the run's record, and its peak memory.
  3. SMP (train_pass) / CE epoch ratio from runs on the prepared fixture,
     and LSW (jvp, clean batch = noisy batch) / CE step ratios on synthetic batches.
  4. SMP relabelling of 1M x 2048 features (float16) against 14 x 8 prototypes: seconds.
Each with the peak GPU memory. Prints the GPU's name and writes everything to
benchmarks/results/gpu_throughput_<gpu>.json. Without CUDA it says so and exits 0;
``smoke`` runs every part at toy sizes on the CPU (to check the script, not to measure).
Run: python benchmarks/gpu_throughput.py [smoke] [images=N] [batch=B] [workers=W]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import hardware
from PIL import Image

from noisybench.api import make_config, run
from noisybench.models import create_model
from noisybench.prepare import prepare

RESULTS = Path(__file__).parent / "results"


def synced() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak() -> int | None:
    return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None


def synthetic_ceiling(model_name: str, batch: int, pixels: int, steps: int, device: torch.device) -> dict:
    """CE steps on uint8 images already on the device: the model's own speed."""
    model = create_model({"name": model_name, "pretrained": False, "pretrained_file": None, "drop_rate": 0.0}, 1000, 3,
                         ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), channels_last=device.type == "cuda").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **({"fused": True} if device.type == "cuda"
                                                                                else {}))
    images = torch.randint(0, 256, (batch, 3, pixels, pixels), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            logits, _ = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    peak_reset()
    start = synced()
    for _ in range(steps):
        step()
    seconds = synced() - start
    return {"images_per_second": batch * steps / seconds, "peak_memory_bytes": peak()}


def write_fixture(folder: Path, count: int) -> Path:
    """An imagefolder of photo-like JPEGs in 10 classes, half 800x600 and half 500x500."""
    rng = np.random.default_rng(0)
    for i in range(count):
        width, height = (800, 600) if i % 2 else (500, 500)
        small = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        path = folder / f"class{i % 10}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(path, quality=90)
    return folder


def timed_run(method: str, out: Path, data: list[str], common: list[str], extra: list[str] = ()) -> dict:
    record = run(method, "imagefolder", out, [*common, *data, *extra])
    eff = record["efficiency"]
    return {"train_images_per_second": eff["train_images_per_second"], "peak_memory_bytes": eff["peak_memory_bytes"],
            "epoch_seconds": eff["epoch_seconds"], "phase_seconds": eff["phase_seconds"]}


def lsw_step_ratio(model_name: str, batch: int, pixels: int, steps: int, device: torch.device) -> dict:
    from lsw_overhead import ce_step, lsw_step, random_batches
    from noisybench_lsw.meta import jvp_meta_step

    model = create_model({"name": model_name, "pretrained": False, "pretrained_file": None, "drop_rate": 0.0}, 10, 3,
                         channels_last=device.type == "cuda").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    noisy = random_batches(pixels, batch, device, steps, 0)
    clean = random_batches(pixels, batch, device, steps, 1)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    times: dict[str, list[float]] = {"ce": [], "lsw jvp": []}
    peaks: dict[str, int | None] = {}
    for round_ in range(4):  # interleaved; the first round warms up
        for name, step in (("ce", ce_step), ("lsw jvp", lsw_step(jvp_meta_step))):
            peak_reset()
            start = synced()
            for (x, y), (xc, yc) in zip(noisy, clean):
                with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda" and name == "ce"):
                    step(model, optimizer, x, y, xc, yc)
            if round_:
                times[name].append(synced() - start)
            peaks[name] = peak()
    return {"ratio_min": min(times["lsw jvp"]) / min(times["ce"]),
            "ratio_median": statistics.median(times["lsw jvp"]) / statistics.median(times["ce"]),
            "ce_ms_per_step": 1000 * statistics.median(times["ce"]) / steps, "peak_memory_bytes": peaks}


def relabel_seconds(rows: int, device: torch.device) -> dict:
    from floors import contenders

    work = contenders(device.type, rows, 2048, 14, 8)
    work["smp relabel"]()  # warm-up
    peak_reset()
    start = synced()
    work["smp relabel"]()
    return {"rows": rows, "seconds": synced() - start, "peak_memory_bytes": peak()}


def main(args: list[str]) -> None:
    smoke = "smoke" in args
    opts = dict(a.split("=", 1) for a in args if "=" in a)
    if not torch.cuda.is_available() and not smoke:
        print(f"{hardware()}\nno CUDA device here: nothing to measure (pass 'smoke' to check the script on the CPU)")
        return
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    model_name, pixels = ("resnet50", 224) if not smoke else ("resnet18", 64)
    batch = int(opts.get("batch", 256 if not smoke else 8))
    images = int(opts.get("images", 4096 if not smoke else 48))
    workers = opts.get("workers", "null")
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu smoke"
    result: dict = {"hardware": hardware(), "gpu": gpu, "model": model_name, "batch": batch, "pixels": pixels}
    print(result["hardware"])
    result["synthetic"] = synthetic_ceiling(model_name, batch, pixels, 30 if not smoke else 2, device)
    print(f"1. {model_name} bf16 channels_last CE on synthetic data: {result['synthetic']['images_per_second']:.0f} "
          f"images/s, peak {result['synthetic']['peak_memory_bytes']} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_fixture(tmp / "raw", images)
        size = ["data.image_size=224"] if not smoke else ["data.image_size=64"]
        common = ["progress=false", f"model.name={model_name}", "epochs=3", f"batch_size={batch}",
                  "mixed_precision=auto", f"data.num_workers={workers}", "eval.every=3", *size]
        prepared = tmp / "prepared"
        prepare(make_config("ce", "imagefolder", overrides=[f"data.root={root}", "progress=false", *size]), prepared)
        result["loader"] = {}
        for name, data in (("raw", [f"data.root={root}"]), ("prepared", [f"data.prepared={prepared}"])):
            result["loader"][name] = timed_run("ce", tmp / f"ce_{name}", data, common)
            print(f"2. noisybench run ce, {name} fixture ({images} JPEGs): "
                  f"{result['loader'][name]['train_images_per_second']:.0f} training images/s, peak "
                  f"{result['loader'][name]['peak_memory_bytes']} bytes")
        noisy = ["noise=symmetric:0.4"]
        methods = {"ce": [], "smp": ["smp.start_epoch=2", "smp.feature_source=train_pass", "smp.max_changed=null"]}
        epochs = {name: timed_run(method_name, tmp / f"m_{name}", [f"data.prepared={prepared}"], common,
                                  [*noisy, *extra])
                  for name, (method_name, extra) in ((n, (n, e)) for n, e in methods.items())}
        ce_epochs = statistics.mean(epochs["ce"]["epoch_seconds"][1:])
        result["method_epoch_ratios"] = {name: statistics.mean(r["epoch_seconds"][1:]) / ce_epochs
                                         for name, r in epochs.items() if name != "ce"}
        print(f"3. epoch ratios to ce (epochs 2-3, prepared fixture): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["method_epoch_ratios"].items()))
    result["lsw_step"] = lsw_step_ratio(model_name, min(batch, 64) if not smoke else 4, pixels,
                                        10 if not smoke else 2, device)
    print(f"   lsw jvp / ce step: min {result['lsw_step']['ratio_min']:.2f}, median "
          f"{result['lsw_step']['ratio_median']:.2f} (ce {result['lsw_step']['ce_ms_per_step']:.1f} ms/step)")
    result["relabel"] = relabel_seconds(1_000_000 if not smoke else 2_000, device)
    print(f"4. smp relabel, {result['relabel']['rows']:,} x 2048: {result['relabel']['seconds']:.3f} s, peak "
          f"{result['relabel']['peak_memory_bytes']} bytes")
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    path = RESULTS / f"gpu_throughput_{slug}.json" if not smoke else Path(tempfile.gettempdir()) / "gpu_smoke.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
