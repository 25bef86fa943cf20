"""Training throughput with real JPEG decoding: images per second of `noisybench run --method ce`.

Writes N synthetic photo-sized JPEGs as an ImageFolder tree (10 classes) to a temporary
folder and trains on it with the paper's pipeline (short edge 256, crop 224), reporting
train images/s, the seconds of each phase and peak memory. On a GPU the defaults are
ResNet-50, bf16, batch 128 (DESIGN §6 anchors: ~2,500 img/s PyTorch AMP on an A100,
~7,000 img/s MLPerf on an H100); on a CPU pass smaller settings, e.g.
  python benchmarks/throughput.py 512 model.name=resnet18 data.image_size=112 batch_size=32 epochs=1
Run: python benchmarks/throughput.py [N] [key=value ...]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from noisybench.api import make_config
from noisybench.engine import train


def write_imagefolder(root: Path, count: int, size=(500, 375)) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, size=(size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        path = root / f"class{i % 10}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).resize(size, Image.BICUBIC).save(path, quality=90)


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv and argv[0].isdigit() else 4096
    overrides = [a for a in argv if "=" in a]
    with tempfile.TemporaryDirectory() as tmp:
        write_imagefolder(Path(tmp) / "data", count)
        config = make_config("ce", "imagefolder", overrides=[
            f"data.root={Path(tmp) / 'data'}", "model.name=resnet50", "batch_size=128", "epochs=2",
            "data.val_fraction=0", "data.test_fraction=0.05", "progress=false", *overrides])
        record = train(config, Path(tmp) / "run")
    eff = record["efficiency"]
    print(f"device {record['environment']['device']}, {record['environment']['mixed_precision']}, "
          f"model {config['model']['name']}, {record['num_train']} train images, batch {config['batch_size']}, "
          f"workers {config['data']['num_workers'] or 'auto'}")
    print(f"train images/s: {eff['train_images_per_second']:.1f}")
    print(f"phase seconds: { {k: round(v, 2) for k, v in eff['phase_seconds'].items()} }")
    print(f"peak memory: {eff['peak_memory_bytes'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main(sys.argv[1:])
