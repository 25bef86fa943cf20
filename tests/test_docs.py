"""The documentation: the README stays short, the docs build with every link checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, cwd=root,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})


def test_the_readme_is_short_and_links_every_docs_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.split()) <= 1500
    pages = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md") if p.name != "index.md"
                   or p.parent.name == "methods")
    missing = [page for page in pages if f"({page})" not in text]
    assert not missing


def test_the_docs_build_strictly_and_a_broken_link_fails_them(tmp_path):
    built = mkdocs_build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr[-2000:]
    page = (tmp_path / "site" / "writing-a-method" / "index.html").read_text()
    assert "noisybench_sample_outputs" in page  # the README's example, included, not copied
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copy(ROOT / "README.md", copy)
    with open(copy / "docs" / "cli.md", "a") as handle:
        handle.write("\nSee [the records](records.md#no-such-heading) and [a page](nowhere.md).\n")
    broken = mkdocs_build(copy, tmp_path / "broken")
    assert broken.returncode != 0 and "nowhere.md" in broken.stderr
