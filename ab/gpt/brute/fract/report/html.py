"""Render the report page from the Jinja2 template `templates/report.html.j2`. Figures are embedded as
PNG data URIs, so the single HTML file is self-contained; PNG/SVG/CSV files are linked next to it."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from . import fmt

TEMPLATES = Path(__file__).parent / "templates"


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    for name in ("pct", "acc", "ci", "si", "count", "seconds", "mb", "pvalue", "raw"):
        env.filters[name] = getattr(fmt, name)
    env.tests["missing"] = fmt.missing
    return env


def render(context: dict[str, Any]) -> str:
    return _env().get_template("report.html.j2").render(**context)
