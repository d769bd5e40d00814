"""The scenario reference in Markdown, generated from the JSON Schema of scenario files.

Every key of every table gets a row: its type, default, allowed values (bounds, choices) and description, as
the pydantic models declare them (`defistress schema` prints the same schema). A key whose model gives no
description is shown as a gap (`GAP`) and listed at the top, so a missing description is visible in the
documentation rather than silently absent. The documentation site builds its scenario reference page from
`markdown()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: what a key without a description shows in its row
GAP = "**no description yet**"

_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),  # 1: "non-empty" (see `allowed`)
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("minProperties", "at least {} entries"),
)


@dataclass
class Row:
    """One key of a table."""

    key: str
    type: str
    required: bool
    default: str
    allowed: str
    description: str | None


@dataclass
class Section:
    """One table of the scenario file: its key path (`agents[kind=borrowers].health_factor`) and keys."""

    path: str
    description: str
    rows: list[Row] = field(default_factory=list)
    see: dict[str, str] = field(default_factory=dict)  # key -> path of the section that already lists its keys


class _Walker:
    def __init__(self, schema: dict[str, Any]):
        self.defs: dict[str, Any] = schema.get("$defs", {})
        self.sections: list[Section] = []
        self.seen_defs: dict[str, str] = {}  # $defs name -> path of the section that lists it

    def resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(the node with its $ref followed, the $defs name or None); sibling keys of a $ref are kept."""
        ref = node.get("$ref")
        if ref is None:
            return node, None
        name = ref.rsplit("/", 1)[-1]
        if name not in self.defs:
            raise KeyError(f"schema: unresolved reference {ref!r}")
        merged = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return merged, name

    @staticmethod
    def non_null(node: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the non-null branch of `X | None`, whether null is allowed)."""
        alts = node.get("anyOf")
        if alts and any(a.get("type") == "null" for a in alts):
            rest = [a for a in alts if a.get("type") != "null"]
            if len(rest) == 1:
                extra = {k: v for k, v in node.items() if k != "anyOf"}
                return {**rest[0], **extra}, True
        return node, False

    # --- types -------------------------------------------------------------------------------------
    def type_of(self, node: dict[str, Any]) -> str:
        node, nullable = self.non_null(node)
        t = self._type(node)
        return f"{t} or none" if nullable else t

    def _type(self, node: dict[str, Any]) -> str:
        node, name = self.resolve(node)
        if "const" in node:
            return f"`{json.dumps(node['const'])}`"
        if "enum" in node:
            return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in node["enum"])
        if "oneOf" in node or "anyOf" in node:
            alts = node.get("oneOf") or node.get("anyOf") or []
            kinds = self.kinds(node)
            if kinds:
                return "table, by `kind`"
            return " or ".join(dict.fromkeys(self._type(a) for a in alts))
        t = node.get("type")
        if t == "array":
            items = node.get("items")
            return f"array of {self._plural(items)}" if items else "array"
        if t == "object" or name is not None:
            if "properties" in node:
                return "table"
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                return f"map of name → {self._type(extra)}"
            return "table of any keys"
        return {"number": "number", "integer": "integer", "string": "string", "boolean": "boolean"}.get(
            str(t), str(t) if t else "any"
        )

    def _plural(self, items: dict[str, Any]) -> str:
        t = self._type(items)
        plural = {"table": "tables", "table, by `kind`": "tables, by `kind`", "number": "numbers", "string": "strings"}
        return plural.get(t, {"integer": "integers"}.get(t, t))

    @staticmethod
    def allowed(node: dict[str, Any]) -> str:
        parts = [
            "non-empty" if k == "minLength" and node[k] == 1 else fmt.format(_num(node[k]))
            for k, fmt in _BOUNDS
            if k in node
        ]
        if "pattern" in node:
            parts.append(f"matches `{node['pattern']}`")
        return ", ".join(parts)

    @staticmethod
    def default(node: dict[str, Any], required: bool) -> str:
        if required:
            return "required"
        if "default" not in node:  # a default built by a factory (an empty list or table)
            return "optional"
        text = json.dumps(node["default"], ensure_ascii=False)
        return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"

    def kinds(self, node: dict[str, Any]) -> dict[str, list[str]]:
        """$defs name -> the `kind` values that select it, for a discriminated union (else {})."""
        disc = node.get("discriminator")
        if not disc or disc.get("propertyName") != "kind":
            return {}
        out: dict[str, list[str]] = {}
        for kind, ref in disc.get("mapping", {}).items():
            out.setdefault(ref.rsplit("/", 1)[-1], []).append(kind)
        return out

    # --- walk ----------------------------------------------------------------------------------------
    def table(self, node: dict[str, Any], path: str, def_name: str | None) -> None:
        """Add the section of an object with properties, then the sections of its nested tables."""
        if def_name is not None:
            if def_name in self.seen_defs:
                return
            self.seen_defs[def_name] = path
        sec = Section(path, node.get("description", ""))
        self.sections.append(sec)
        required = set(node.get("required", []))
        nested: list[tuple[str, dict[str, Any]]] = []
        for key, prop in node.get("properties", {}).items():
            inner, _ = self.non_null(prop)
            resolved, _ = self.resolve(inner)
            # the key's own description (a nested table's class docstring describes the table, shown above it)
            desc = prop.get("description") or inner.get("description")
            sec.rows.append(
                Row(
                    key=key,
                    type=self.type_of(prop),
                    required=key in required,
                    default=self.default(prop, key in required),
                    allowed=self.allowed(resolved),
                    description=desc,
                )
            )
            nested.append((key, inner))
        for key, inner in nested:
            self.child(inner, f"{path}.{key}" if path else key, sec, key)

    def child(self, node: dict[str, Any], path: str, parent: Section, key: str) -> None:
        """Sections for whatever tables a key holds: a table, an array of tables, a map of tables, a union."""
        resolved, name = self.resolve(node)
        if name is not None and name in self.seen_defs and "properties" in resolved:
            parent.see[key] = self.seen_defs[name]
            return
        if "properties" in resolved:
            self.table(resolved, path, name)
        elif resolved.get("type") == "array" and isinstance(resolved.get("items"), dict):
            self.child(resolved["items"], f"{path}[]", parent, key)
        elif isinstance(resolved.get("additionalProperties"), dict):
            self.child(resolved["additionalProperties"], f"{path}.<name>", parent, key)
        elif self.kinds(resolved):
            base = path.removesuffix("[]")
            for def_name, kinds in self.kinds(resolved).items():
                label = "|".join(kinds)
                sub, _ = self.resolve({"$ref": f"#/$defs/{def_name}"})
                self.table(sub, f"{base}[kind={label}]", def_name)
        elif resolved.get("oneOf") or resolved.get("anyOf"):  # a union picked by a callable discriminator
            base = path.removesuffix("[]")
            for alt in resolved.get("oneOf") or resolved.get("anyOf") or []:
                sub, alt_name = self.resolve(alt)
                if "properties" not in sub:
                    continue
                kind = sub["properties"].get("kind", {})
                tag = kind.get("const") or kind.get("default")
                label = f"kind={tag}" if tag else (alt_name or sub.get("title", "table"))
                if alt_name is not None and alt_name in self.seen_defs:
                    parent.see[f"{key}[{label}]"] = self.seen_defs[alt_name]
                else:
                    self.table(sub, f"{base}[{label}]", alt_name)


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        v = int(v)
    return f"{v:,}" if isinstance(v, int) and abs(v) >= 10_000 else str(v)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def sections(schema: dict[str, Any]) -> list[Section]:
    """Every table of the scenario file, top level first, each table once (shared tables are listed where
    they first appear and referred to elsewhere)."""
    w = _Walker(schema)
    w.table(schema, "", None)
    return w.sections


def markdown(schema: dict[str, Any] | None = None, title: str = "Scenario reference") -> str:
    """The reference page: a summary of gaps, then one table of keys per table of the scenario file."""
    if schema is None:
        from defistress.scenarios.loader import json_schema

        schema = json_schema()
    secs = sections(schema)
    rows = [(s.path, r) for s in secs for r in s.rows]
    gaps = [f"{p}.{r.key}" if p else r.key for p, r in rows if not r.description]
    out = [
        f"# {title}",
        "",
        "Every key of a scenario file, generated from the pydantic models (the JSON Schema that "
        "`defistress schema` prints). `name` in a path stands for a key you choose (an asset symbol, a venue id); "
        "`[]` marks an array of tables (`[[...]]` in TOML); `[kind=...]` the table an array entry becomes for "
        'that `kind`. Durations accept `"30s"`, `"15m"`, `"2h"`, `"1d"` or seconds.',
        "",
        f"{len(rows)} keys in {len(secs)} tables; {len(rows) - len(gaps)} have a description.",
        "",
    ]
    if gaps:
        out += [
            f'!!! warning "{len(gaps)} keys have no description yet"',
            "",
            "    " + ", ".join(f"`{g}`" for g in gaps),
            "",
        ]
    for s in secs:
        out += [f"## `{s.path}`" if s.path else "## Top level", ""]
        if s.description:
            out += [" ".join(s.description.split()), ""]
        out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for r in s.rows:
            desc = _cell(r.description) if r.description else GAP
            if r.key in s.see:
                desc += f" (keys as in `{s.see[r.key]}`)"
            out.append(f"| `{r.key}` | {_cell(r.type)} | {_cell(r.default)} | {_cell(r.allowed)} | {desc} |")
        out.append("")
    return "\n".join(out)
