"""The core's own hook implementations, called after any a method provides."""

from __future__ import annotations

import torch

from noisybench import hookimpl
from noisybench.errors import ConfigError
from noisybench.run import Batch, Run, StepOutput


@hookimpl(trylast=True)
def noisybench_train_step(run: Run, batch: Batch) -> StepOutput:
    """One plain step: forward, the method's loss, backward, optimiser step."""
    logits, features = run.model(batch.images)
    loss = run.hook.noisybench_loss(
        run=run,
        logits=logits,
        features=features,
        labels=batch.labels,
        indices=batch.indices,
        epoch=run.epoch,
    )
    if loss is None:
        raise ConfigError(
            f"method '{run.method}' implements neither noisybench_loss nor noisybench_train_step"
        )
    if not torch.is_tensor(loss) or loss.ndim != 0:
        shape = tuple(loss.shape) if torch.is_tensor(loss) else type(loss).__name__
        raise ConfigError(f"method '{run.method}': hook noisybench_loss returned {shape}, not a scalar tensor "
                          "(reduce the per-sample losses, e.g. with .mean())")
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    run.optimizer.step()
    return StepOutput(loss=loss.detach(), logits=logits.detach())
