"""The README's third-party plugin, installed in-process through a real entry point."""

import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_digits
from noisybench.cli import main
from noisybench.plugins import installed_methods

README = (Path(__file__).parents[1] / "README.md").read_text()


@pytest.fixture
def taylor_installed(tmp_path, monkeypatch):
    code = re.search(r"<!-- --8<-- \[start:plugin-example\] -->\n```python\n(.*?)```", README, re.S).group(1)
    assert 20 <= len(code.strip().splitlines()) <= 40
    site = tmp_path / "site"
    site.mkdir()
    (site / "noisybench_taylor.py").write_text(code)
    dist = site / "noisybench_taylor-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: noisybench-taylor\nVersion: 0.1\n")
    entry_points_toml = re.search(r"```toml\n(\[project.entry-points.noisybench\]\n.*?)```", README, re.S).group(1)
    ini = entry_points_toml.replace("project.entry-points.", "").replace('"', "")  # TOML -> INI
    (dist / "entry_points.txt").write_text(ini)
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("noisybench_taylor", None)


def test_example_plugin_is_discovered_and_listed(taylor_installed, capsys):
    assert "taylor" in [ep.name for ep in entry_points(group="noisybench")]
    assert installed_methods()["taylor"].package == "noisybench-taylor"
    main(["methods"])
    assert re.search(r"^taylor\s+noisybench-taylor", capsys.readouterr().out, re.M)


def test_example_plugin_runs_end_to_end(taylor_installed, tmp_path):
    m = run_digits(tmp_path / "run", "epochs=4", "noise=symmetric:0.4", "taylor.order=2", method="taylor")
    assert m["method"] == "taylor"
    assert m["test"]["accuracy"] > 0.5
    # its per-sample loss is a noise score: mislabelled samples have the larger losses
    assert m["detection"]["auc"] > 0.8
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert "noise_score" in samples.columns and (samples["noise_score"] > 0).all()


def test_the_shipped_testing_fixture_runs_the_readme_example(taylor_installed, noisybench_run):
    """docs/writing-a-method.md's test, as a plugin author would write it."""
    record = noisybench_run("taylor", "noise=symmetric:0.4", "epochs=4", "taylor.order=2")
    assert record["method"] == "taylor" and record["test"]["accuracy"] > 0.5
    assert record["detection"]["auc"] > 0.8
    assert (record.folder / "samples.csv").is_file() and record["history"][-1]["epoch"] == 4
