"""PES's two stages after early training: the progressive refinement and the confident-sample selection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from accelerate.utils import send_to_device
from noisybench_pes.layers import block_modules, last_block_names, parameters_of, reinitialise

from noisybench.run import broadcast_weights, evaluating


def refined_modules(run) -> tuple[list[torch.nn.Module], list[torch.nn.Module]]:
    """(the last block's modules, [the classifier]) of the run's backbone."""
    backbone = run.accelerator.unwrap_model(run.model).backbone
    block = block_modules(backbone, last_block_names(backbone, run.options["last_block"]))
    return block, [backbone.get_classifier()]


def refine_pass(run, optimizer, seed: int) -> float:
    """One pass of cross-entropy over the whole noisy training set (the authors' ``train`` with
    their unweighted criterion) in which only ``optimizer``'s tensors move; returns the mean loss."""
    loader = run.loader(run.train_set, run.config["batch_size"], shuffle=True, seed=seed)
    total, batches = 0.0, 0
    for images, labels, _ in loader:
        images, labels = send_to_device((images, labels), run.device)
        logits, _ = run.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        run.optimizer.zero_grad(set_to_none=True)
        optimizer.zero_grad(set_to_none=True)
        run.accelerator.backward(loss)
        optimizer.step()
        total, batches = total + float(loss), batches + 1
    run.optimizer.zero_grad(set_to_none=True)  # the frozen layers' gradients go, unused
    return total / max(1, batches)


def refine(run) -> None:
    """Re-initialise the last block and the classifier and train them alone for T2 passes,
    then re-initialise the classifier and train it alone for T3 passes; Adam at ``pes_lr``,
    every earlier layer fixed (its BatchNorm statistics still move, as in the authors' train mode)."""
    o = run.options
    block, head = refined_modules(run)
    run.model.train()
    losses = []
    for stage, (modules, passes) in enumerate(((block + head, o["T2"]), (head, o["T3"]))):
        if passes <= 0:  # the authors' noisy_refine returns at once: nothing re-initialised
            continue
        reinitialise(modules)
        broadcast_weights(run.accelerator, run.accelerator.unwrap_model(run.model))  # one draw for every process
        optimizer = run.accelerator.prepare_optimizer(torch.optim.Adam(parameters_of(modules), lr=o["pes_lr"]))
        for count in range(passes):
            losses.append(refine_pass(run, optimizer, run.config["seed"] * 1000 + 100 * stage + count))
    run.log(pes_refine_losses=losses)
    if o["refined_layers"] == "trained":  # new tensors in the run's optimiser: no momentum carried over
        for parameter in parameters_of(block + head):
            run.optimizer.optimizer.state.pop(parameter, None)


@torch.no_grad()
def label_probabilities(run) -> torch.Tensor:
    """Each training sample's softmax (N×K) as the selection sees it: the mean over two views
    drawn with the training transforms, model in eval mode (the authors' ``predict_softmax``),
    or one pass with the eval transforms (``selection_views=eval``)."""
    if run.options["selection_views"] == "eval":
        logits, _ = run.predict()
        return logits.float().softmax(dim=1)
    acc = run.accelerator
    model = acc.unwrap_model(run.model)
    mine = torch.arange(run.num_train)[acc.process_index :: acc.num_processes]
    parts = []
    with evaluating(model, acc):
        for chunk in mine.split(run.config["eval_batch_size"]):
            views = run.views(chunk, 2)
            parts.append(sum(model(view)[0].float().softmax(dim=1) for view in views) / 2)
    local = torch.cat(parts) if parts else torch.zeros(0, run.num_classes, device=run.device)
    _, probabilities = run.collect(mine.to(run.device), local)
    return probabilities


def class_weights(labels: torch.Tensor, confident: torch.Tensor, num_classes: int) -> torch.Tensor:
    """mean(n_c over classes with n_c > 0) / n_c for the confident samples' labels, 0 where n_c = 0
    (the authors' ``cw``)."""
    counts = torch.bincount(labels[confident], minlength=num_classes).double()
    weights = torch.zeros(num_classes, dtype=torch.float64)
    present = counts > 0
    if present.any():
        weights[present] = counts[present].mean() / counts[present]
    return weights.float()


def select(run) -> None:
    """Confident samples: the prediction agrees with the noisy label; their class weights."""
    probabilities = label_probabilities(run).cpu()
    labels = run.noisy_labels
    confident = probabilities.argmax(dim=1) == labels
    run.state["confident"] = confident
    run.state["p_label"] = probabilities.gather(1, labels[:, None]).squeeze(1)
    run.state["class_weights"] = class_weights(labels, confident, run.num_classes)
    run.state["selections"] = run.state.get("selections", 0) + 1
    run.log(pes_confident=int(confident.sum()))
