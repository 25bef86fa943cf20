"""Unreadable images: which items of each split could not be read, counted over every
process, loader worker and resumed session, and said once on the console. The policy
(a blank image in its place) is images.py's.

Called by the loop (engine.py) after each epoch; the record (results.py) counts them in
metrics.json and marks them in samples.csv.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from noisybench.datasets import DataSplits, file_positions, image_paths
from noisybench.logs import logger


class UnreadableImages:
    """Per split, the mask of unreadable items, kept in ``progress.corrupt`` (checkpointed)."""

    def __init__(self, splits: DataSplits, accelerator: Any, progress: Any):
        self.splits, self.accelerator, self.progress = splits, accelerator, progress
        self.reported: dict[str, int] = {}

    def masks(self) -> dict[str, np.ndarray]:
        """Per split, which of its items could not be read so far (all processes, workers and
        resumed sessions). A collective: every process calls it."""
        splits, known = self.splits, self.progress.corrupt
        for name, datasets in (("train", (splits.train, splits.train_eval)), ("val", (splits.val,)),
                               ("test", (splits.test,)), ("clean", (splits.clean,))):
            masks = [files.corrupt[torch.as_tensor(at)] for files, at in filter(None, map(file_positions, datasets))]
            if masks:
                mask = torch.stack(masks).any(dim=0)
                if name in known:
                    mask |= torch.as_tensor(known[name])
                mask = mask.to(self.accelerator.device, torch.int32)
                known[name] = (self.accelerator.reduce(mask, "sum") > 0).cpu().numpy()
        return known

    def report(self) -> None:
        """Say once which unreadable images were replaced (see images.py for the policy)."""
        for name, mask in self.masks().items():
            count = int(mask.sum())
            if count > self.reported.get(name, 0) and self.accelerator.is_main_process:
                paths = image_paths(getattr(self.splits, name))[mask]
                shown = ", ".join(map(str, paths[:3])) + (", ..." if count > 3 else "")
                logger.warning(f"{count} unreadable {name} images replaced by blank ones: {shown}")
            self.reported[name] = count
