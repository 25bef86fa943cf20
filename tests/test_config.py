import pytest
import yaml

from conftest import noisybench_subprocess
from noisybench.api import make_config
from noisybench.cli import main
from noisybench.config import parse_override
from noisybench.errors import ConfigError


def test_layers_defaults_then_dataset_then_file_then_arguments(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"epochs": 7, "optimizer": {"lr": 0.3, "momentum": 0.5}}))
    config = make_config("ce", "digits", path, ["optimizer.lr=0.1", "ce.label_smoothing=0.2"])
    assert config["epochs"] == 7  # file over dataset default (15)
    assert config["optimizer"]["lr"] == 0.1  # argument over file
    assert config["optimizer"]["momentum"] == 0.5  # file over core default
    assert config["optimizer"]["weight_decay"] == 5e-4  # dataset default over core default
    assert config["batch_size"] == 64  # dataset default
    assert config["ce"]["label_smoothing"] == 0.2  # method option
    assert config["method"] == "ce" and config["dataset"] == "digits"


def test_method_and_dataset_can_come_from_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: ce\ndataset: digits\n")
    config = make_config(config_file=path)
    assert (config["method"], config["dataset"]) == ("ce", "digits")


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lrr=0.1", "unknown config key 'optimizer.lrr'.*did you mean 'optimizer.lr'"),
        ("ce.q=0.7", "unknown config key 'ce.q'"),
        ("epochs=many", r"config key 'epochs' \(command line\): Input should be a valid integer, got 'many'"),
        ("noise=gaussian:0.2", "unknown noise type 'gaussian'"),
        ("setting=dirty", r"config key 'setting' \(command line\): Input should be 'noisy', 'verify' or 'clean', got 'dirty'"),
        ("batch_size=0", r"config key 'batch_size' \(command line\): Input should be greater than or equal to 1, got 0"),
    ],
)
def test_bad_config_names_the_fault(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("ce", "digits", overrides=[override])


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"optimizer.learning_rate.*config file"):
        make_config("ce", "digits", path)


def test_override_values_are_read_as_yaml():
    assert parse_override("lr_schedule.milestones=[5, 10]") == ("lr_schedule.milestones", [5, 10])
    assert parse_override("model.pretrained=true") == ("model.pretrained", True)
    assert parse_override("noise=symmetric:0.4") == ("noise", "symmetric:0.4")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("epochs")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--method", "cee", "--dataset", "digits"], "unknown method 'cee' (did you mean 'ce'?)"),
        (["run", "--method", "ce", "--dataset", "digitz"], "unknown dataset 'digitz'"),
        (["run", "--method", "ce", "--dataset", "digits", "optimizer.lrr=1"], "unknown config key 'optimizer.lrr'"),
        (["run", "--method", "ce", "--dataset", "digits", "noise=symmetric:2"], "noise='symmetric:2'"),
        (["run", "--method", "ce", "--dataset", "digits", "model.pretrained=true"], "model.pretrained_file"),
        (["run", "--dataset", "digits"], "no method given"),
    ],
)
def test_cli_errors_exit_nonzero_naming_the_fault(argv, message, capsys, tmp_path):
    code = main([*argv, "--output", str(tmp_path / "out"), "progress=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_console_script_reports_errors_with_exit_status(tmp_path):
    proc = noisybench_subprocess("run", "--method", "ce", "--dataset", "digits", "epochz=3")
    assert proc.returncode == 2
    assert "unknown config key 'epochz'" in proc.stderr


def test_methods_lists_ce_with_its_package(capsys):
    assert main(["methods"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("ce "))
    assert "noisybench" in line and "Cross-entropy" in line


def test_datasets_lists_digits(capsys):
    assert main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out


def test_yaml_sections_of_other_methods_are_ignored_but_typos_fail(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("smp:\n  alpha: 0.3\nce:\n  label_smoothing: 0.1\n")
    config = make_config("ce", "digits", path)
    assert config["ce"]["label_smoothing"] == 0.1 and "smp" not in config
    assert make_config("smp", "digits", path)["smp"]["alpha"] == 0.3
    path.write_text("smpp:\n  alpha: 0.3\n")
    with pytest.raises(ConfigError, match="smpp.alpha"):
        make_config("ce", "digits", path)
