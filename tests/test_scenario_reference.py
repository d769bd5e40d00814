"""The scenario reference page (scenarios/reference.py) lists every key of the schema with what the models
declare, and shows a key without a description as a visible gap instead of failing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from defistress.scenarios.loader import json_schema
from defistress.scenarios.reference import GAP, markdown, sections


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Inner(_Strict):
    """An inner table."""

    x: float = Field(1.0, ge=0, le=10, description="an x, USD")
    y: int


class KindA(_Strict):
    kind: Literal["a"] = "a"
    v: float = Field(0.5, gt=0, lt=1, description="a share")


class KindB(_Strict):
    kind: Literal["b"] = "b"
    w: str = Field(min_length=1, description="a name")


class Top(_Strict):
    inner: Inner
    items: list[Annotated[KindA | KindB, Field(discriminator="kind")]] = Field(default_factory=list)
    by_name: dict[str, Inner] = Field(default_factory=dict, description="name -> inner")
    opt: float | None = Field(None, description="optional")
    mode: Literal["fast", "slow"] = "fast"


def test_a_small_schema_renders_types_bounds_defaults_and_gaps():
    md = markdown(Top.model_json_schema(), title="T")
    lines = md.splitlines()
    assert lines[0] == "# T"
    # by hand: 5 top-level keys + x, y + kind, v + kind, w; described: by_name, opt, x, v, w
    assert "11 keys in 4 tables; 5 have a description." in md
    assert '!!! warning "6 keys have no description yet"' in md
    assert "    `inner`, `items`, `mode`, `inner.y`, `items[kind=a].kind`, `items[kind=b].kind`" in lines
    assert "| `x` | number | `1.0` | ≥ 0, ≤ 10 | an x, USD |" in lines
    assert f"| `y` | integer | required |  | {GAP} |" in lines
    assert "| `v` | number | `0.5` | > 0, < 1 | a share |" in lines
    assert "| `w` | string | required | non-empty | a name |" in lines
    assert "| `opt` | number or none | `null` |  | optional |" in lines
    assert f'| `mode` | one of `"fast"`, `"slow"` | `"fast"` |  | {GAP} |' in lines
    assert "| `by_name` | map of name → table | optional |  | name -> inner (keys as in `inner`) |" in lines
    assert "| `items` | array of tables, by `kind` | optional |  | " + GAP + " |" in lines
    heads = [ln for ln in lines if ln.startswith("## ")]
    assert heads == ["## Top level", "## `inner`", "## `items[kind=a]`", "## `items[kind=b]`"]
    assert "An inner table." in md


def _props_by_table(schema: dict) -> list[tuple[str, str, dict]]:
    """(table, key, property) of every property of every object in the schema, read directly: the top level,
    every $defs entry and every table written inline (an embedded parameter model)."""
    out: list[tuple[str, str, dict]] = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                out.extend((where, k, p) for k, p in node["properties"].items())
            for k, v in node.items():
                if k != "$defs":
                    walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk({k: v for k, v in schema.items() if k != "$defs"}, "")
    for name, d in schema["$defs"].items():
        walk(d, name)
    return out


def _described(p: dict) -> bool:
    alts = [a for a in p.get("anyOf", []) if a.get("type") != "null"]
    return bool(p.get("description") or (len(alts) == 1 and alts[0].get("description")))


def test_the_scenario_reference_lists_every_key_of_the_schema_once():
    schema = json_schema()
    props = _props_by_table(schema)
    rows = [(s.path, r) for s in sections(schema) for r in s.rows]
    assert len(rows) == len(props)  # every table of the schema is reached, and each is listed once
    n_gaps = sum(not _described(p) for _, _, p in props)
    md = markdown(schema)
    n_tables = len({where for where, _, _ in props})  # the top level, every $defs entry, every inline table
    assert f"{len(props)} keys in {n_tables} tables; {len(props) - n_gaps} have a description." in md
    assert md.count(GAP) == n_gaps
    for _, key, p in props:
        assert f"| `{key}` |" in md
        if p.get("description"):
            assert " ".join(p["description"].split()).replace("|", "\\|") in md
