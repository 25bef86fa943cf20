"""Models: any timm model by name, pretrained weights from a local file only.

noisybench's own architectures, ``small_cnn`` (for 8×8 to 32×32 images) and those of the
CIFAR papers (``resnet18_cifar``, ``resnet34_cifar``: a 3×3 stride-1 stem and no max-pool;
``cnn9``: Co-teaching's nine-layer CNN), are registered in timm's model registry
(``register_in_timm``, done before noisybench builds any model through timm), so
``model.name`` picks them the same way as ``resnet50``. ``small_cnn`` and ``cnn9`` are
plain torch and built without importing timm: timm pulls in torchvision and
``torch._dynamo``, about a second of a quick run's start. Every model is wrapped so one
forward pass gives both logits and pooled pre-logit features.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisybench.errors import ConfigError


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks and global average pooling; timm's head interface."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, width: int = 32, drop_rate: float = 0.0, **_: Any):
        super().__init__()

        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(
            *block(in_chans, width, True), *block(width, 2 * width, True), *block(2 * width, 4 * width, False)
        )
        self.num_features = 4 * width
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, *_: Any) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class CNN9(SmallCNN):
    """Co-teaching's CNN (Han et al. 2018, Table 3): three 3×3 convs of 128, max-pool, dropout,
    three of 256, max-pool, dropout, then unpadded 3×3 convs of 512, 256 and 128, each conv
    with batch norm and leaky ReLU (slope 0.01); global average pooling and one linear layer.
    Inputs of 28 pixels and more."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0, dropout2d: float = 0.25,
                 **_: Any):
        nn.Module.__init__(self)

        def conv(cin: int, cout: int, padding: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=padding), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01)]

        def pool() -> list[nn.Module]:
            return [nn.MaxPool2d(2, 2), nn.Dropout2d(dropout2d)]

        self.features = nn.Sequential(
            *conv(in_chans, 128), *conv(128, 128), *conv(128, 128), *pool(),
            *conv(128, 256), *conv(256, 256), *conv(256, 256), *pool(),
            *conv(256, 512, 0), *conv(512, 256, 0), *conv(256, 128, 0),
        )
        self.num_features = 128
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(128, num_classes)


def cifar_resnet(variant: str, layers: list[int], pretrained: bool, **kwargs: Any) -> nn.Module:
    """timm's ResNet with BasicBlocks and the CIFAR stem: a 3×3 stride-1 conv of 64 and no
    max-pool, so 32-pixel inputs reach the last stage at 4×4 (He et al. 2016 §4.2 as the
    noisy-label papers' code builds it)."""
    from timm.models import build_model_with_cfg
    from timm.models.resnet import BasicBlock, ResNet

    def build(**args: Any) -> ResNet:
        model = ResNet(block=BasicBlock, layers=layers, **args)
        model.conv1 = nn.Conv2d(args.get("in_chans", 3), 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return model

    return build_model_with_cfg(build, variant, pretrained, **kwargs)


_SMALL = {"num_classes": 10, "input_size": (3, 32, 32), "classifier": "fc"}
default_cfgs = {  # timm reads a registering module's default_cfgs (plain dicts: its old style)
    "small_cnn": {**_SMALL, "first_conv": "features.0"},
    "cnn9": {**_SMALL, "first_conv": "features.0"},
    "resnet18_cifar": {**_SMALL, "first_conv": "conv1"},
    "resnet34_cifar": {**_SMALL, "first_conv": "conv1"},
}
PLAIN = {"small_cnn": SmallCNN, "cnn9": CNN9}  # built without timm


def small_cnn(pretrained: bool = False, **kwargs: Any) -> SmallCNN:
    from timm.models import build_model_with_cfg

    return build_model_with_cfg(SmallCNN, "small_cnn", pretrained, **kwargs)


def cnn9(pretrained: bool = False, **kwargs: Any) -> CNN9:
    from timm.models import build_model_with_cfg

    return build_model_with_cfg(CNN9, "cnn9", pretrained, **kwargs)


def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    return cifar_resnet("resnet18_cifar", [2, 2, 2, 2], pretrained, **kwargs)


def resnet34_cifar(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    return cifar_resnet("resnet34_cifar", [3, 4, 6, 3], pretrained, **kwargs)


def register_in_timm() -> None:
    """Put noisybench's architectures in timm's model registry (once), so
    ``timm.create_model("small_cnn")`` works like any timm name."""
    import timm
    from timm.models import register_model

    if not timm.is_model("small_cnn"):
        for entry in (small_cnn, cnn9, resnet18_cifar, resnet34_cifar):
            register_model(entry)


def build_plain(name: str, num_classes: int, in_chans: int, drop_rate: float) -> nn.Module:
    """``small_cnn`` or ``cnn9`` as timm would build it (the same module, the same initial
    weights under the same seed), with its ``pretrained_cfg``, without importing timm."""
    model = PLAIN[name](num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    model.pretrained_cfg = {**default_cfgs[name], "architecture": name}
    return model


class InputNormalize(nn.Module):
    """uint8 images (0-255) or float images (0-1) to normalised float32, on the model's device.

    Loader workers send uint8 (a quarter of float32's bytes through shared memory and the
    host-to-device copy); the division and normalisation run here, the same operations in
    the same order as torchvision's ``ToDtype(scale=True)`` and ``Normalize``. ``mean`` and
    ``std`` are not saved with the weights. With ``channels_last`` the batch is laid out
    NHWC, as a channels-last model wants. ``normalization=None``: inputs pass unchanged
    (datasets whose transforms end in normalised floats).
    """

    def __init__(self, normalization: tuple | None, channels_last: bool = False):
        super().__init__()
        self.enabled = normalization is not None
        mean, std = normalization if self.enabled else ((0.0,), (1.0,))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.fill = torch.tensor([round(255 * m) for m in mean] if self.enabled else [128] * 3, dtype=torch.uint8)
        self.channels_last = channels_last
        self._decoded: tuple[Any, torch.Tensor] | None = None

    def decode(self, batch: list) -> torch.Tensor:
        """JPEGs decoded on this module's device (data.decoder=gpu); the last batch's result is
        kept, for methods that forward one batch several times."""
        if self._decoded is None or self._decoded[0] is not batch:
            from noisybench.datasets.devicedecode import decode_batch

            self._decoded = (batch, decode_batch(batch, self.mean.device, self.fill))
        return self._decoded[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, list):
            x = self.decode(x)
        if self.enabled:
            x = x.to(torch.float32).mul(1.0 / 255) if x.dtype == torch.uint8 else x.to(torch.float32)
            x = x.sub(self.mean).div(self.std)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class Classifier(nn.Module):
    """A timm backbone whose forward returns ``(logits, pooled pre-logit features)``, taking
    images as the loaders give them (``InputNormalize``)."""

    def __init__(self, backbone: nn.Module, normalization: tuple | None = None, channels_last: bool = False):
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features
        self.inputs = InputNormalize(normalization, channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone.forward_head(self.backbone.forward_features(self.inputs(x)), pre_logits=True)
        return self.backbone.get_classifier()(features), features


def check_model_name(name: str) -> None:
    """Fail naming ``name`` and close names unless timm (with noisybench's own) has it."""
    import timm

    register_in_timm()
    if not timm.is_model(name):
        hint = difflib.get_close_matches(name, timm.list_models(), n=3)
        suggestion = f"; close names: {', '.join(hint)}" if hint else ""
        raise ConfigError(f"model.name='{name}' is not a timm model{suggestion}")


def create_model(model_config: dict[str, Any], num_classes: int, in_chans: int,
                 normalization: tuple | None = None, channels_last: bool = False) -> Classifier:
    """Build ``model.name`` for ``num_classes``; weights come from ``model.pretrained_file`` if set."""
    name = model_config["name"]
    if name not in PLAIN:
        import timm

        check_model_name(name)
    weights = model_config["pretrained_file"]
    pretrained = bool(model_config["pretrained"] or weights)
    if pretrained and not weights:
        raise ConfigError(
            "model.pretrained=true needs model.pretrained_file=PATH: weights are read from a local file, never downloaded"
        )
    if name in PLAIN:
        backbone = build_plain(name, num_classes, in_chans, model_config["drop_rate"])
    else:
        backbone = timm.create_model(name, num_classes=num_classes, in_chans=in_chans,
                                     drop_rate=model_config["drop_rate"])
    model = Classifier(backbone, normalization, channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.pretrained_tensors = load_pretrained(backbone, Path(weights).expanduser(), in_chans) if pretrained else 0
    return model


PREFIXES = ("module.", "model.", "backbone.")


def read_weights(path: Path, key: str = "model.pretrained_file") -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (tensors only,
    ``weights_only=True``; a dict holding it under ``state_dict`` or ``model`` is opened),
    with the prefixes that wrappers add (``module.``, ``model.``, ``backbone.``) stripped.
    ``key`` names what asked for the file in messages."""
    if not path.is_file():
        raise ConfigError(f"{key}: no such file: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: many exception types, one message
        raise ConfigError(f"{key}: cannot read {path} as weights: {str(exc).splitlines()[0]}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{key}: {path} holds no state dict of tensors")
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_pretrained(backbone: nn.Module, path: Path, in_chans: int) -> int:
    """Load ``path`` into ``backbone``; every tensor but the classifier's must match. Returns
    the number of tensors loaded. The classifier is new (the class count differs), with
    ``nn.Linear``'s own init, as the papers' code replaces a head (``model.fc =
    nn.Linear(2048, K)``): some architectures' inits are scaled for 1,000 classes, e.g.
    timm's EfficientNet draws U(±1/√K), whose logits on pretrained features start with a
    std of 5-12 for K = 10, and fine-tuning from such a head wrecks the pretrained features
    in its first steps. A first conv trained on 3 channels is adapted to ``in_chans`` as
    timm does."""
    from timm.models import adapt_input_conv

    state = read_weights(path)
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    classifier = {f"{cfg.get('classifier', 'fc')}.{k}" for k in backbone.get_classifier().state_dict()}
    state = {k: v for k, v in state.items() if k not in classifier}
    first_conv = f"{cfg.get('first_conv')}.weight"
    if first_conv in state and state[first_conv].shape[1] != in_chans:
        state[first_conv] = adapt_input_conv(in_chans, state[first_conv])
    own = backbone.state_dict()
    missing = sorted(k for k in own if k not in state and k not in classifier
                     and not k.endswith("num_batches_tracked"))  # older files lack these counters
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        def listed(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        faults = [f"{len(keys)} {what} ({listed(keys)})" for what, keys in
                  (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if keys]
        raise ConfigError(f"model.pretrained_file: {path} does not fit {type(backbone).__name__}: "
                          f"{'; '.join(faults)} tensors; is it the weights of another model?")
    backbone.load_state_dict(state, strict=False)
    head = backbone.get_classifier()
    if isinstance(head, nn.Linear):  # new, as the papers' code makes it: nn.Linear's own init
        head.reset_parameters()
    return len(state)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_bytes(model: nn.Module) -> int:
    """Bytes of the saved weights (parameters and persistent buffers)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
