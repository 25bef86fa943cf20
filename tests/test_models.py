import pytest
import timm
import torch

from noisybench.errors import ConfigError
from noisybench.models import create_model


def config(**changes):
    base = {"name": "small_cnn", "pretrained": False, "pretrained_file": None, "drop_rate": 0.0}
    return base | changes


def test_small_cnn_is_a_timm_model_returning_logits_and_pooled_features():
    from noisybench.models import register_in_timm

    register_in_timm()
    assert all(timm.is_model(name) for name in ("small_cnn", "cnn9", "resnet18_cifar", "resnet34_cifar"))
    model = create_model(config(), num_classes=7, in_chans=1)
    logits, features = model(torch.randn(4, 1, 8, 8))
    assert logits.shape == (4, 7) and features.shape == (4, model.num_features)
    assert torch.allclose(model.backbone.get_classifier()(features), logits)


@pytest.mark.parametrize("name", ["small_cnn", "cnn9"])
def test_plain_builds_equal_timms(name):
    """small_cnn and cnn9 are built without timm: the same modules and, under one seed, the same
    initial weights and pretrained_cfg as timm.create_model gives."""
    from noisybench.models import build_plain, register_in_timm

    register_in_timm()
    torch.manual_seed(3)
    by_timm = timm.create_model(name, num_classes=7, in_chans=1, drop_rate=0.1)
    torch.manual_seed(3)
    plain = build_plain(name, 7, 1, 0.1)
    assert type(plain) is type(by_timm) and repr(plain) == repr(by_timm)
    a, b = by_timm.state_dict(), plain.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("first_conv", "classifier", "num_classes"):
        assert plain.pretrained_cfg[key] == by_timm.pretrained_cfg[key]


def test_any_timm_model_by_name():
    model = create_model(config(name="resnet18"), num_classes=3, in_chans=3)
    logits, features = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3) and features.shape == (2, 512)


def test_cifar_resnets_have_the_papers_stem_and_their_parameter_count():
    for name, imagenet_name in (("resnet18_cifar", "resnet18"), ("resnet34_cifar", "resnet34")):
        model = create_model(config(name=name), num_classes=10, in_chans=3)
        assert model.backbone.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 512, 4, 4)  # 32 → 4, no stem stride
        assert model(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)
        # timm's ImageNet ResNet of the same depth with its 7×7 stem (64·3·49) swapped for 3×3 (64·3·9)
        imagenet = sum(p.numel() for p in timm.create_model(imagenet_name, num_classes=10).parameters())
        assert sum(p.numel() for p in model.backbone.parameters()) == imagenet - 64 * 3 * 49 + 64 * 3 * 9
    assert sum(p.numel() for p in timm.create_model("resnet34_cifar", num_classes=10).parameters()) == 21_282_122


def test_cnn9_is_coteachings_table_3_network():
    model = create_model(config(name="cnn9"), num_classes=10, in_chans=3)
    convs = [m for m in model.backbone.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.padding[0]) for c in convs] == [
        (3, 128, 1), (128, 128, 1), (128, 128, 1), (128, 256, 1), (256, 256, 1), (256, 256, 1),
        (256, 512, 0), (512, 256, 0), (256, 128, 0)]
    conv_weights = sum(c.in_channels * c.out_channels * 9 + c.out_channels for c in convs)
    batch_norms = 2 * sum(c.out_channels for c in convs)
    assert sum(p.numel() for p in model.backbone.parameters()) == conv_weights + batch_norms + 128 * 10 + 10
    assert model.backbone.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 128, 2, 2)  # 8 → 6 → 4 → 2
    assert model(torch.randn(2, 3, 28, 28))[0].shape == (2, 10)


def test_pretrained_asked_for_without_a_file_fails_clearly():
    with pytest.raises(ConfigError, match="model.pretrained_file"):
        create_model(config(pretrained=True), 10, 1)


def test_pretrained_file_missing_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no such file.*nowhere.pth"):
        create_model(config(pretrained=True, pretrained_file=str(tmp_path / "nowhere.pth")), 10, 1)


def test_pretrained_weights_load_from_a_local_file_and_the_head_is_new(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("small_cnn", num_classes=10, in_chans=1)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    model = create_model(config(pretrained_file=str(path)), num_classes=4, in_chans=1)
    loaded = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("fc."):
            assert loaded[key].shape[0] == 4  # classifier re-initialised for 4 classes
        else:
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("wrap", ["plain", "module.", "model.", "safetensors", "state_dict"])
def test_pretrained_files_in_common_wrappings_load_every_tensor(tmp_path, wrap):
    torch.manual_seed(0)
    source = timm.create_model("small_cnn", num_classes=10, in_chans=3)
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if wrap == "safetensors" else "w.pth")
    if wrap == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        content = {f"{wrap}{k}" if wrap.endswith(".") else k: v for k, v in state.items()}
        torch.save({"state_dict": content} if wrap == "state_dict" else content, path)
    model = create_model(config(pretrained_file=str(path)), num_classes=4, in_chans=3)
    assert model.pretrained_tensors == len(state) - 2  # all but fc.weight and fc.bias
    assert torch.equal(model.backbone.features[0].weight, state["features.0.weight"])


def test_weights_of_another_model_are_refused_naming_the_tensors(tmp_path):
    source = timm.create_model("small_cnn", num_classes=10, in_chans=3, width=16)  # narrower: other shapes
    torch.save(source.state_dict(), tmp_path / "narrow.pth")
    with pytest.raises(ConfigError, match=r"does not fit SmallCNN: .*of another shape \(features.0.weight"):
        create_model(config(pretrained_file=str(tmp_path / "narrow.pth")), 4, 3)
    partial = {k: v for k, v in timm.create_model("small_cnn").state_dict().items() if not k.startswith("features.4")}
    partial["head.extra"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"missing \(features.4.*unexpected \(head.extra\)"):
        create_model(config(pretrained_file=str(tmp_path / "partial.pth")), 4, 3)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="cannot read .*junk.pth as weights"):
        create_model(config(pretrained_file=str(tmp_path / "junk.pth")), 4, 3)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ConfigError, match="resnet5 .*not a timm model.*resnet50"):
        create_model(config(name="resnet5 "), 10, 3)


def test_a_pretrained_models_new_classifier_has_nn_linears_init_not_one_scaled_for_1000_classes(tmp_path):
    """timm's MobileNetV3 (as its EfficientNets) draws a classifier U(±1/√K): for K = 10 its logits
    on pretrained features start huge. Loaded weights get a head as nn.Linear makes it."""
    torch.manual_seed(0)
    torch.save(timm.create_model("mobilenetv3_small_050").state_dict(), tmp_path / "w.pth")
    fresh = create_model(config(name="mobilenetv3_small_050"), num_classes=10, in_chans=3)
    fan_in = fresh.backbone.get_classifier().in_features
    assert fresh.backbone.get_classifier().weight.abs().max() > 3 / fan_in ** 0.5  # timm's own: up to 1/√10
    loaded = create_model(config(name="mobilenetv3_small_050", pretrained_file=str(tmp_path / "w.pth")), 10, 3)
    head = loaded.backbone.get_classifier()
    assert head.weight.abs().max() <= 1 / fan_in ** 0.5 and head.bias.abs().max() <= 1 / fan_in ** 0.5
