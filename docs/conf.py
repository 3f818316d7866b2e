"""Sphinx's settings for the docs site: `inv docs` builds it (a warning fails) and serves it."""

import tomllib
from pathlib import Path

with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as settings:
    _project = tomllib.load(settings)["project"]

project = _project["name"]
release = _project["version"]
# Sphinx with Markdown (MyST), as the Pallets projects: MkDocs Material announces its end of life.
extensions = ["myst_parser", "sphinx.ext.graphviz"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
# Links to a page's section: [text](page.md#section-title).
myst_heading_anchors = 3
# Furo: no web fonts, no scripts from other sites; diagrams are SVG made here by Graphviz.
html_theme = "furo"
html_title = project
graphviz_output_format = "svg"
html_static_path = ["_static"]
html_js_files = ["diagrams.js"]
