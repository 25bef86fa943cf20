"""SMP's relabelling and SINet's refresh against the bare matrix products they cannot avoid.

Relabel (eq. 8-9): N×D features against K classes of p prototypes; floor: one N×D by D×K
product. Refresh (SINet eq. 4-6): initial prototypes, similarities, consistency, visual
prototypes, distances; floor: three N×D by D×K products (the passes over the features).
Seconds per million rows (a block of rows scored repeatedly), interleaved rounds, min and
median, on the CPU and, where there is one, on the GPU (float16 features there, as a run has).
Run: python benchmarks/floors.py [rows=125000] [dim=2048] [classes=14] [prototypes=8] [rounds=5]
"""

from __future__ import annotations

import sys

import torch
from common import hardware, interleaved, ratio_line
from noisybench_sinet.weighting import (consistency, initial_prototypes, prototype_distances, sample_weights,
                                        visual_prototypes, visual_similarity)

from noisybench_smp.prototypes import class_scores, relabel


def contenders(device: str, rows: int, dim: int, classes: int, per_class: int) -> dict:
    g = torch.Generator().manual_seed(0)
    features = torch.rand(rows, dim, generator=g).to(device)
    if device == "cuda":
        features = features.half()
    labels = torch.randint(0, classes, (rows,), generator=g).to(device)
    confidence = torch.rand(rows, generator=g).to(device)
    semantic = torch.rand(classes, classes, generator=g).to(device)
    prototypes = [torch.rand(per_class, dim, generator=g).to(device) for _ in range(classes)]
    product = torch.rand(dim, classes, generator=g).to(device, features.dtype)

    def refresh():
        initial = initial_prototypes(features, confidence, labels, classes, 50)
        p = consistency(semantic, visual_similarity(features, initial), labels)
        found = visual_prototypes(features, labels, p, classes)
        return sample_weights(prototype_distances(features, found).gather(1, labels[:, None]))

    return {
        "matmul floor (1 product)": lambda: features @ product,
        "smp relabel": lambda: relabel(class_scores(features, prototypes), labels),
        "matmul floor (3 products)": lambda: [features @ product for _ in range(3)],
        "sinet refresh": refresh,
    }


def main(args: list[str]) -> None:
    opts = {"rows": 125_000, "dim": 2048, "classes": 14, "prototypes": 8, "rounds": 5}
    opts.update({k: int(v) for k, v in (a.split("=", 1) for a in args)})
    print(f"# {hardware()}")
    print(f"# {opts['rows']:,} rows x {opts['dim']}-d, {opts['classes']} classes x {opts['prototypes']} prototypes; "
          f"{opts['rounds']} interleaved rounds; seconds per million rows")
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        work = contenders(device, opts["rows"], opts["dim"], opts["classes"], opts["prototypes"])
        for fn in work.values():
            fn()  # warm-up
        times = interleaved(work, opts["rounds"])
        scale = 1_000_000 / opts["rows"]
        print(f"{device}:")
        for name, floor in (("matmul floor (1 product)", "matmul floor (1 product)"),
                            ("smp relabel", "matmul floor (1 product)"),
                            ("matmul floor (3 products)", "matmul floor (3 products)"),
                            ("sinet refresh", "matmul floor (3 products)")):
            print("  " + ratio_line(name, times[name], times[floor], unit=scale, label="s/M"))


if __name__ == "__main__":
    main(sys.argv[1:])
