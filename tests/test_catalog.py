"""The methods catalog: every installed method has its metadata and a row, and the page is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from noisybench.plugins import installed_methods, load_method

ROOT = Path(__file__).parents[1]


def catalog_module():
    spec = importlib.util.spec_from_file_location("catalog", ROOT / "benchmarks" / "catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_method_has_catalog_metadata_and_explains_every_option():
    for name in installed_methods():
        plugin = load_method(name)
        meta = getattr(plugin, "CATALOG", None)
        assert isinstance(meta, dict) and set(meta) == {"family", "paper", "code", "checked"}, name
        assert meta["family"] and meta["checked"], name
        options = plugin.noisybench_config_defaults() if hasattr(plugin, "noisybench_config_defaults") else {}
        assert set(options) <= set(getattr(plugin, "OPTION_HELP", {})), name


def test_the_catalog_page_lists_every_installed_method_and_is_current():
    catalog = catalog_module()
    text = catalog.render()
    listed = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| [`") or
              line.startswith("| `")]
    assert [name.split("`")[1] for name in listed] == list(installed_methods())
    assert (ROOT / "docs" / "methods" / "catalog.md").read_text(encoding="utf-8") == text, \
        "docs/methods/catalog.md is out of date: run python benchmarks/catalog.py"


def test_deviations_and_costs_are_read_from_the_page_and_the_measurements(tmp_path, monkeypatch):
    catalog = catalog_module()
    (tmp_path / "docs" / "methods").mkdir(parents=True)
    (tmp_path / "docs" / "methods" / "ce.md").write_text(
        "# ce\n\n## Deviations from the authors' code\n\n- **one**: a\n- **two**: b\n  more of two\n\n## Next\n- x\n")
    (tmp_path / "costs.csv").write_text("label,contender,ratio_min,ratio_median\ndigits,ce,1.000,1.010\n"
                                        "fmnist,ce,0.990,1.020\ndigits,ce x,2,2\n")
    monkeypatch.setattr(catalog, "ROOT", tmp_path)
    monkeypatch.setattr(catalog, "COSTS", tmp_path / "costs.csv")
    assert catalog.deviations("ce") == "2: one; two ([list](ce.md#deviations-from-the-authors-code))"
    assert catalog.deviations("smp") == "no page"
    assert catalog.cost(catalog.read_costs(), "ce") == "digits 1.00 (1.01), fmnist 0.99 (1.02)"
