"""Tables of the HTML pages as data: the templates (sim/report/templates/macros.html) draw them.

A `Table` has a header, rows of `Cell`s (text, the exact figure on hover, a CSS class), a caption that says what to
read in it and an optional note. `transpose` turns a wide table (many columns) into a long one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from defistress.sim.report.formatting import exact, format_value


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, the exact value on hover (`title`), a CSS class (num, flag, warn, muted) and an
    optional link target (`href`)."""

    text: str
    title: str = ""
    cls: str = ""
    href: str = ""


@dataclass
class Table:
    """A table: `header` labels, `rows` of cells (the first column labels its row), a caption, a note below."""

    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    note: str = ""
    cls: str = ""

    def transpose(self, corner: str = "") -> Table:
        """Columns become rows: the first column's texts become the header."""
        head = [corner or self.header[0], *[r[0].text for r in self.rows]]
        rows = [[Cell(h), *[r[i] for r in self.rows]] for i, h in enumerate(self.header) if i > 0]
        return Table(head, rows, self.caption, self.note, self.cls)


@dataclass
class Section:
    """One titled part of a page: an introduction, paragraphs of plain text, then tables."""

    id: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)


def cell(v: Any, kind: str = "plain", cls: str = "") -> Cell:
    """A formatted value: numbers right-aligned (class num) with their exact figure on hover."""
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    return Cell(format_value(v, kind), exact(v, kind), cls or ("num" if numeric or kind != "plain" else ""))


def text(s: Any, cls: str = "", title: str = "", href: str = "") -> Cell:
    return Cell(str(s), title, cls, href)
