"""Reading the HTML pages in tests: every table as rows of cell texts, element ids and in-page links."""

from html.parser import HTMLParser


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts, and every element id."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.hrefs.append(a["href"][1:])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> _Tables:
    p = _Tables()
    p.feed(text)
    return p


def table_with(text: str, first_cell: str) -> dict[str, list[str]]:
    """The table whose header starts with `first_cell`, as {row label: other cells}."""
    for t in parse(text).tables:
        if t and t[0] and t[0][0] == first_cell:
            return {r[0]: r[1:] for r in t[1:]}
    raise AssertionError(f"no table headed {first_cell!r}")
