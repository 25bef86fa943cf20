"""Which layers PES re-initialises, and how: the last block of the backbone and its classifier.

The authors split a ResNet into part 1 (up to block 3), part 2 (block 4, ``layer4``) and part
3 (the final linear layer) and rebuild parts 2 and 3 as new PyTorch modules (``renew_layers``),
so their weights get PyTorch's default initialisation. Here the same modules are reset in
place with ``reset_parameters`` (the same default initialisation; BatchNorm's running
statistics restart too), so the run's optimiser and checkpoint keep the same tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from noisybench.errors import ConfigError


def last_block_names(backbone: nn.Module, chosen: str | list[str]) -> list[str]:
    """Module paths of the backbone's last block: ``chosen``, or for ``auto`` a ResNet's
    ``layer4``, small_cnn's third conv and its BatchNorm, cnn9's last three convs."""
    if chosen != "auto":
        return list(chosen)
    from noisybench.models import CNN9, SmallCNN

    if hasattr(backbone, "layer4"):
        return ["layer4"]
    if isinstance(backbone, CNN9):
        return [f"features.{i}" for i in range(22, 30)]
    if isinstance(backbone, SmallCNN):
        return ["features.8", "features.9"]
    raise ConfigError(f"pes.last_block=auto knows ResNets, small_cnn and cnn9, not {type(backbone).__name__}: name "
                      "the modules of its last block, e.g. pes.last_block=[stages.3]")


def block_modules(backbone: nn.Module, names: list[str]) -> list[nn.Module]:
    modules = []
    for name in names:
        try:
            modules.append(backbone.get_submodule(name))
        except AttributeError:
            raise ConfigError(f"pes.last_block: the model has no module '{name}'") from None
    return modules


def reinitialise(modules: list[nn.Module]) -> None:
    """PyTorch's default initialisation for every layer in ``modules`` (as a new module gets)."""
    for module in modules:
        for layer in module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()


def parameters_of(modules: list[nn.Module]) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for parameter in module.parameters():
            seen.setdefault(id(parameter), parameter)
    return list(seen.values())
