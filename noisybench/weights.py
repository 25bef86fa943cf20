"""``noisybench weights convert``: pretrained weights of another library's layout, as a
safetensors file in timm's key names that ``model.pretrained_file`` loads.

A checkpoint whose names are timm's (timm's own files; torchvision's ResNets, whose names
timm kept) is taken by name. Any other is taken by order: its i-th tensor becomes the
model's i-th, and only when every shape matches one to one; otherwise it is refused,
naming the first tensor that does not fit. BatchNorm's ``num_batches_tracked`` counters
are matched among themselves (old files lack them); a classifier of another class count,
or none, is left out (a run makes its own). Reading never unpickles code: safetensors, or
``torch.load(weights_only=True)``, tensors only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from noisybench import records
from noisybench.errors import ConfigError, NoisybenchError
from noisybench.models import check_model_name, read_weights

MARK = "noisybench weights convert"  # in the metadata of every file written here


def counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def reference_model(name: str) -> nn.Module:
    """timm's ``name`` with its default head, random weights: the layout to convert to."""
    import timm

    check_model_name(name)
    return timm.create_model(name, pretrained=False)


def classifier_keys(model: nn.Module) -> set[str]:
    head = model.pretrained_cfg.get("classifier", "fc")
    return {f"{head}.{k}" for k in model.get_classifier().state_dict()}


def by_name(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
            classifier: set[str]) -> dict[str, torch.Tensor] | None:
    """The source taken by name, if its names and shapes are the model's (counters and a
    classifier may be absent, a classifier may have another class count); else None."""
    if any(k not in target for k in source):
        return None
    needed = [k for k in target if not counter(k) and k not in classifier]
    if any(k not in source or source[k].shape != target[k].shape for k in needed):
        return None
    return {k: v for k, v in source.items() if k not in classifier or v.shape == target[k].shape}


def shape(t: torch.Tensor) -> str:
    return "×".join(map(str, t.shape)) or "scalar"


def by_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], classifier: set[str],
             where: str) -> dict[str, torch.Tensor]:
    """The source's i-th tensor as the model's i-th, counters apart; refused at the first
    shape that differs, or if the counts differ (a headless source maps onto the model less
    its classifier)."""
    src = [(k, v) for k, v in source.items() if not counter(k)]
    tgt = [k for k in target if not counter(k)]
    if len(src) == len(tgt) - len(classifier):
        tgt = [k for k in tgt if k not in classifier]
    for i, ((key, tensor), own) in enumerate(zip(src, tgt)):
        if tensor.shape != target[own].shape and own not in classifier:
            raise ConfigError(f"{where}: by order, tensor {i} '{key}' ({shape(tensor)}) does not fit the model's "
                              f"'{own}' ({shape(target[own])}); refusing to convert")
    if len(src) != len(tgt):
        raise ConfigError(f"{where}: holds {len(src)} tensors (BatchNorm counters apart), the model {len(tgt)}: "
                          "the names are not timm's and the order cannot map one to one; refusing to convert")
    mapped = {own: tensor for (_, tensor), own in zip(src, tgt) if tensor.shape == target[own].shape}
    counters = ([v for k, v in source.items() if counter(k)], [k for k in target if counter(k)])
    if len(counters[0]) == len(counters[1]):
        mapped.update(zip(counters[1], counters[0]))
    return mapped


def convert_state(source: dict[str, torch.Tensor], model: nn.Module, where: str) -> tuple[dict[str, torch.Tensor], str]:
    """(the state in the model's names, ``name`` or ``order``)."""
    target, classifier = model.state_dict(), classifier_keys(model)
    named = by_name(source, target, classifier)
    if named is not None:
        return named, "name"
    return by_order(source, target, classifier, where), "order"


def check_output(output: Path) -> None:
    """Write only a new file or one this command wrote before: never anything else."""
    if not output.exists() and not output.is_symlink():
        return
    if output.is_symlink() or not output.is_file():
        raise NoisybenchError(f"--output {output}: exists and is not a regular file; refusing to replace it")
    from safetensors import safe_open

    try:
        with safe_open(str(output), "pt") as handle:
            ours = (handle.metadata() or {}).get("written_by") == MARK
    except Exception:  # not a safetensors file at all: not ours either
        ours = False
    if not ours:
        raise NoisybenchError(f"--output {output}: exists and was not written by `{MARK}`; refusing to overwrite it")


def convert(source: str | Path, model_name: str, output: str | Path) -> str:
    """Write ``output`` (safetensors) from ``source`` for timm's ``model_name``; a line saying what was done."""
    from safetensors.torch import save_file

    source, output = Path(source), Path(output)
    check_output(output)
    state = read_weights(source, key="weights convert")
    model = reference_model(model_name)
    mapped, how = convert_state(state, model, str(source))
    tensors = {k: v.detach().contiguous().clone() for k, v in mapped.items()}
    with records.atomic_path(output) as tmp:
        save_file(tensors, str(tmp), metadata={"written_by": MARK, "source": source.name, "model": model_name,
                                               "mapped_by": how})
    total = len(model.state_dict())
    return (f"wrote {output}: {len(tensors)} of {model_name}'s {total} tensors, by {how} "
            f"({total - len(tensors)} left out: classifier or counters); train with model.name={model_name} "
            f"model.pretrained_file={output}")
