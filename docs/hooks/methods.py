"""mkdocs hook (mkdocs.yml ``hooks:``): the docs' lists of methods, generated from the plugins
installed where the docs are built, so a new method (shipped or third-party) is listed
without editing a page. A page asks for a list with a marker line:

- ``<!-- installed methods: names -->``: the names, comma-separated, each linking its page;
- ``<!-- installed methods: table -->``: a table of name, package and description.

The descriptions are the first lines of the plugins' docstrings, as ``noisybench methods``
prints them (read from source, without importing torch).
"""

from __future__ import annotations

from pathlib import Path

NAMES = "<!-- installed methods: names -->"
TABLE = "<!-- installed methods: table -->"


def method_link(name: str, docs_dir: Path, page_dir: str) -> str:
    """``name`` in code, linking docs/methods/NAME.md where that page exists."""
    if not (docs_dir / "methods" / f"{name}.md").is_file():
        return f"`{name}`"
    return f"[`{name}`]({'' if page_dir == 'methods' else 'methods/'}{name}.md)"


def methods_markdown(marker: str, docs_dir: Path, page_dir: str) -> str:
    """The markdown a marker stands for, from the installed plugins."""
    from noisybench.plugins import installed_methods, method_description

    methods = installed_methods().values()
    if marker == NAMES:
        return ", ".join(method_link(info.name, docs_dir, page_dir) for info in methods)
    rows = ["| name | package | what |", "|---|---|---|"]
    for info in methods:
        what = " ".join(method_description(info).split()).replace("|", "\\|")
        rows.append(f"| {method_link(info.name, docs_dir, page_dir)} | {info.package} {info.version} | {what} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = str(Path(page.file.src_uri).parent)
    for marker in (NAMES, TABLE):
        if marker in markdown:
            markdown = markdown.replace(marker, methods_markdown(marker, Path(config["docs_dir"]), page_dir))
    return markdown
