"""The method plugin API: every point where a method can change how a run trains.

A method is a plugin (a module or a class) registered under the entry-point group
``noisybench``; the entry-point name is the method's name. Each run builds a fresh
``pluggy.PluginManager`` holding the core defaults and the selected method only, so a
method implements just the hooks it needs, with just the arguments it needs.

Per-sample state (corrected labels, weights) lives in ``run.state`` (a dict of tensors
indexed by dataset index): the core checkpoints and restores it, so a resumed run keeps it.
Every training batch carries the dataset ``indices`` of its samples; under several
processes each sees a shard, and ``run.collect`` gathers values back by index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import torch

    from noisybench.run import Batch, Run, StepOutput

hookspec = pluggy.HookspecMarker("noisybench")


@hookspec
def noisybench_config_defaults() -> dict[str, Any]:
    """Declare the method's options and their defaults.

    They form the config section named after the method: a method ``smp`` returning
    ``{"alpha": 0.5}`` is configured with ``smp.alpha=0.3``. A key not declared here is
    rejected, naming the key. The resolved values are ``run.options``.
    """


@hookspec
def noisybench_check_options(options: dict[str, Any], config: dict[str, Any]) -> None:
    """Check the method's resolved ``options`` (and, if needed, the whole ``config``) when
    the config is resolved, before anything is built or trained: raise
    ``noisybench.errors.ConfigError`` naming the key (``smp.alpha``) for a bad value, so a
    sweep refuses it before its first run rather than after the first method's runs.
    """


@hookspec
def noisybench_setup(run: Run) -> None:
    """Prepare the method once, after the model and data are ready, before the first epoch.

    Allocate per-sample state here (``run.state["weights"] = torch.full((run.num_train,), 0.5)``);
    when a run resumes, the checkpointed ``run.state`` is restored after this hook.
    """


@hookspec
def noisybench_epoch_start(run: Run, epoch: int) -> None:
    """Run an epoch-level phase before training epoch ``epoch`` (counted from 1, as the papers do).

    The place for label correction and reweighting: ``run.extract_features()`` gives pooled
    pre-logit features of training samples (eval transforms, no gradient, model restored to
    train mode), ``run.model`` the model, ``run.train_set`` the training set and
    ``run.noisy_labels`` its labels. Wrap work in ``with run.phase("name"):`` to time it.
    """


@hookspec(firstresult=True)
def noisybench_train_step(run: Run, batch: Batch) -> StepOutput | None:
    """Replace the whole optimisation step for one training batch.

    Return a ``StepOutput`` (the detached batch loss and, if available, the logits) after
    updating the parameters; return None to leave the step to the next implementation.
    The core's default (called last) does forward, ``noisybench_loss``, backward and
    ``run.optimizer.step()``. Meta-learning methods implement this hook.
    """


@hookspec(firstresult=True)
def noisybench_loss(
    run: Run,
    logits: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
    epoch: int,
) -> torch.Tensor | None:
    """Return the scalar training loss of one batch (used by the default train step).

    ``logits`` (B×K) and ``features`` (B×D, pooled pre-logit) come from one forward pass;
    ``labels`` are the noisy labels and ``indices`` the samples' dataset indices, which
    is how per-sample state is looked up: ``run.state["weights"][indices]``.
    """


@hookspec
def noisybench_epoch_end(run: Run, epoch: int) -> None:
    """Run work after the training batches of ``epoch`` and before evaluation."""


@hookspec
def noisybench_sample_outputs(run: Run) -> dict[str, torch.Tensor] | None:
    """Publish per-sample columns over the whole training set, indexed by dataset index.

    Known names feed the metrics: ``corrected_label`` (int, the label the method trains
    towards), ``weight`` (float), ``noise_score`` (float, higher means more likely
    mislabelled; ROC AUC), ``flagged`` (bool, judged mislabelled; FDR, recall, F1; if absent,
    ``corrected_label != noisy label``). Any other column is exported as it is. Called
    after every epoch, on every process (in the last epoch also before ``epoch_end``, so
    the first corrected labels are kept if ``epoch_end`` corrects once more); values must
    agree across processes.
    """


@hookspec(firstresult=True)
def noisybench_eval_logits(run: Run, images: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
    """The logits that evaluate the run: val and test accuracy, ``run.predict``,
    ``noisybench evaluate``, ``noisybench predict``. ``logits`` are the model's own for
    ``images``, computed once by the core; a method with further networks
    (``run.add_network``) returns, e.g., the log of two networks' mean softmax. Called in
    eval passes, every model in eval mode and under no_grad; return None (or leave it out)
    to keep ``logits``."""
