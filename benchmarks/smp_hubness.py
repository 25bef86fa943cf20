"""Why SMP's density rule helps or fails in a feature space: hubness numbers of the pooled
features of a trained run's model (or of pretrained weights before any training), on the
run's own training set and noisy labels.

    python benchmarks/smp_hubness.py RUN_DIR [RUN_DIR ...] [--pretrained WEIGHTS [--before-only]]

Per feature space: the mean (and 10th-90th percentile) cosine of a sample to the global mean
feature; the 10th percentile of cosine similarities within a true class against the 90th
across true classes (the first below the second: the classes overlap in cosine); and, with
SMP's own rule (S_c at the 40th percentile, rho of eq. 6) on each noisy class's samples, how
many classes' densest sample carries a wrong label, and the purity of the 8 prototypes of
SMP's walk (eq. 7, eta < 0.95): the share whose noisy label is right.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import hardware


def stats(features: torch.Tensor, true: np.ndarray, noisy: np.ndarray, seed: int = 0) -> dict[str, float]:
    from noisybench_smp.prototypes import cosine_matrix, density, separation, threshold, walk

    g = F.normalize(features.float(), dim=1)
    to_mean = g @ F.normalize(g.mean(dim=0), dim=0)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(g), size=min(2000, len(g)), replace=False))
    s, t = (g[sample] @ g[sample].T).numpy(), true[sample]
    same, off = t[:, None] == t[None, :], ~np.eye(len(sample), dtype=bool)
    densest_wrong, purity = 0, []
    for c in np.unique(noisy):
        members = np.flatnonzero(noisy == c)
        members = np.sort(rng.choice(members, size=min(1280, len(members)), replace=False))
        sim = cosine_matrix(features[members])
        rho = density(sim, threshold(sim, 0.4))
        densest_wrong += int(true[members[int(rho.argmax())]] != c)
        chosen = walk(rho, separation(sim, rho), 8).numpy()
        purity.append(float(np.mean(true[members[chosen]] == c)))
    return {"cos_to_mean": float(to_mean.mean()), "cos_to_mean_p10": float(to_mean.quantile(0.1)),
            "cos_to_mean_p90": float(to_mean.quantile(0.9)), "within_p10": float(np.quantile(s[same & off], 0.1)),
            "across_p90": float(np.quantile(s[~same], 0.9)), "densest_wrong": densest_wrong,
            "classes": len(np.unique(noisy)), "prototype_purity": float(np.mean(purity))}


def split_features(model: torch.nn.Module, run_dir: Path) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``model``'s features of the run's training samples (eval transforms, the run's data and
    noise rebuilt from its config.yaml), with their true and noisy labels."""
    from noisybench.config import load_yaml
    from noisybench.datasets import build_dataset

    splits = build_dataset(load_yaml(run_dir / "config.yaml"))
    with torch.no_grad():
        loader = torch.utils.data.DataLoader(splits.train_eval, batch_size=250)
        features = torch.cat([model(images)[1] for images, *_ in loader])
    return features, splits.true_labels, splits.train_labels


def final_model(run_dir: Path) -> torch.nn.Module:
    from noisybench.predict import read_run, rebuild

    card, config, folder = read_run(run_dir, "last")
    return rebuild(card, config, folder / "model.safetensors", torch.device("cpu"))


def pretrained_model(run_dir: Path, weights: Path) -> torch.nn.Module:
    """The run's architecture and input normalisation with ``weights`` loaded, untrained."""
    from noisybench.config import load_yaml
    from noisybench.models import create_model

    config, card = load_yaml(run_dir / "config.yaml"), json.loads((run_dir / "model.json").read_text())
    return create_model(dict(config["model"], pretrained_file=str(weights)), card["num_classes"], card["channels"],
                        tuple(tuple(v) for v in card["normalization"])).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--pretrained", type=Path, help="also the pretrained weights' features before training")
    parser.add_argument("--before-only", action="store_true",
                        help="with --pretrained: only the features before training (the run may be unfinished)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {hardware()}")
    print("| features | cos to global mean: mean (p10–p90) | within-class p10 | across-class p90 "
          "| densest sample mislabelled | purity of the 8 prototypes |")
    print("|---|---|---|---|---|---|")
    models = [(f"pretrained {args.pretrained.name}, before training", args.runs[0],
               pretrained_model(args.runs[0], args.pretrained))] if args.pretrained else []
    if not (args.pretrained and args.before_only):
        models += [(str(run_dir), run_dir, final_model(run_dir)) for run_dir in args.runs]
    for name, run_dir, model in models:
        r = stats(*split_features(model, run_dir))
        print(f"| {name} | {r['cos_to_mean']:.2f} ({r['cos_to_mean_p10']:.2f}–{r['cos_to_mean_p90']:.2f}) "
              f"| {r['within_p10']:.2f} | {r['across_p90']:.2f} | {r['densest_wrong']} of {r['classes']} "
              f"| {r['prototype_purity']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
