"""What a command imports: listing methods reads metadata and sources, never torch."""

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from noisybench.plugins import installed_methods, method_description, source_docstring

HEAVY = ("torch", "timm", "torchvision", "accelerate", "pandas", "sklearn", "matplotlib", "numpy")


def test_methods_command_imports_no_plugin_and_no_torch():
    code = ("import sys\nfrom noisybench.cli import main\nmain(['methods'])\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "[]"
    assert any(line.startswith("smp ") and "multi-prototypes" in line for line in lines)


@pytest.mark.parametrize("command", ["leaderboard", "export"])
def test_reading_records_imports_no_torch(clean_ce_run, tmp_path, command):
    args = [command, str(clean_ce_run)] + (["--output", str(tmp_path / "suspects.csv")] if command == "export" else [])
    code = (f"import sys\nfrom noisybench.cli import main\nassert main({args!r}) in (0, None)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'accelerate'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", ["ce", "smp", "lsw", "sinet"])
def test_descriptions_read_from_source_equal_the_imported_docstrings(name):
    info = installed_methods()[name]
    imported = info.entry_point.load().__doc__.strip().splitlines()[0]
    assert method_description(info) == imported


def test_a_class_entry_point_gives_the_class_docstring(tmp_path, monkeypatch):
    (tmp_path / "someplugin.py").write_text('"""The module."""\n\nclass Method:\n    """The method itself."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_docstring(EntryPoint("m", "someplugin:Method", "noisybench")) == "The method itself."
    assert source_docstring(EntryPoint("m", "someplugin", "noisybench")) == "The module."
    assert "someplugin" not in sys.modules


def test_the_quick_start_run_imports_neither_timm_nor_torchvision(tmp_path):
    """small_cnn on in-memory digits is plain torch: timm (and torchvision with it) is about a
    second of imports the README's first run does not need."""
    args = ["run", "--method", "ce", "--dataset", "digits", "noise=symmetric:0.4", "epochs=1", "progress=false",
            "--output", str(tmp_path / "run")]
    code = (f"import sys\nfrom noisybench.cli import main\nassert main({args!r}) in (0, None)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'timm', 'torchvision'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run" / "metrics.json").is_file()
