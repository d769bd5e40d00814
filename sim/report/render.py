"""Every HTML page defistress writes is a Jinja2 template in sim/report/templates/ rendered here: `base.html` holds
the page frame and the shared style, `macros.html` draws tables and figures, one template per page extends them.
Autoescaping is on: text from scenarios and runs is escaped; only the templates write markup.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from defistress.sim.report.formatting import format_param, format_usd, format_value

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.cache
def environment() -> Environment:
    """The Jinja2 environment of the templates (autoescaped HTML, undefined names are errors)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = format_value
    env.filters["usd"] = format_usd
    env.filters["param"] = format_param
    return env


def render(template: str, **context: Any) -> str:
    """Render `template` (a file name in sim/report/templates/) with `context`."""
    return environment().get_template(template).render(**context)


def data_uri(path: Path) -> str:
    """A PNG file as a data URI (the page carries its figures)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
