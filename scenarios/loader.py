"""Load a scenario from a built-in name, a TOML file or a dict; apply `--set` overrides; validate.

Every problem is reported as a `ScenarioError` holding one line per error: the key path (with list
items named by their id where they have one) and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from defistress.scenarios.registry import builtin_names, builtin_path
from defistress.scenarios.schema import Scenario

HISTORIC_DIR = Path(__file__).parent / "historic" / "data"


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; `errors` lists 'key.path: message' lines."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  - {e}" for e in errors))


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with where it came from (for data paths and the run manifest)."""

    scenario: Scenario
    source: str
    base_dir: Path
    raw: dict

    @property
    def hash(self) -> str:
        """SHA-256 of the resolved scenario (after overrides), canonical JSON."""
        blob = json.dumps(self.scenario.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def resolve_data(self, file: str) -> Path:
        """Find a data file: relative to the scenario file, then in the bundled historic folder."""
        for base in (self.base_dir, HISTORIC_DIR):
            p = (base / file).resolve()
            if p.is_file():
                return p
        raise ScenarioError(
            self.source, [f"data file {file!r} not found (looked in {self.base_dir} and {HISTORIC_DIR})"]
        )


def load(ref: str | Path | dict | Scenario | LoadedScenario, overrides: list[str] | None = None) -> LoadedScenario:
    """Load and validate a scenario given by built-in name, TOML path, raw dict or model."""
    if isinstance(ref, LoadedScenario):
        if not overrides:
            return ref
        raw, source, base = copy.deepcopy(ref.raw), ref.source, ref.base_dir
    elif isinstance(ref, Scenario):
        raw, source, base = ref.model_dump(mode="json"), f"<{ref.run.name}>", Path.cwd()
    elif isinstance(ref, dict):
        raw, source, base = copy.deepcopy(ref), "<dict>", Path.cwd()
    else:
        path = _locate(str(ref))
        source, base = str(path), path.parent
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(source, [f"malformed TOML: {exc}"]) from None
    for item in overrides or []:
        apply_override(raw, item, source)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(source, [_format_error(e, raw) for e in exc.errors()]) from None
    loaded = LoadedScenario(scenario, source, base, raw)
    _check_data_files(loaded)
    return loaded


def _locate(ref: str) -> Path:
    p = Path(ref)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ScenarioError(ref, [f"no such scenario file; built-in names: {', '.join(builtin_names())}"])
        return p
    path = builtin_path(ref)
    if path is None:
        raise ScenarioError(
            ref, [f"unknown scenario {ref!r}: not a file, and not a built-in (built-ins: {', '.join(builtin_names())})"]
        )
    return path


def _check_data_files(loaded: LoadedScenario) -> None:
    s = loaded.scenario
    files = []
    if s.market.replay is not None:
        files.append(("market.replay.file", s.market.replay.file))
    if s.gas.replay is not None:
        files.append(("gas.replay.file", s.gas.replay.file))
    files += [(f"agents.{a.id}.file", a.file) for a in s.agents if getattr(a, "kind", "") == "book"]
    for key, f in files:
        try:
            loaded.resolve_data(f)
        except ScenarioError as exc:  # name the key that points at the missing file
            raise ScenarioError(exc.source, [f"{key}: {e}" for e in exc.errors]) from None


# --- overrides -----------------------------------------------------------------------------------
def apply_override(raw: dict, item: str, source: str = "--set") -> None:
    """Apply one `a.b.c=value` override in place; list items may be addressed by index or by id/symbol."""
    if "=" not in item:
        raise ScenarioError(source, [f"--set {item!r}: expected key.path=value"])
    path, value_text = item.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ScenarioError(source, [f"--set {item!r}: empty key path"])
    value = _parse_value(value_text.strip())
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        node = _child(node, key, keys[: i + 1], source, create=True)
    last = keys[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, keys, source)
        node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ScenarioError(source, [f"--set {path}: {'.'.join(keys[:-1])} is a value, not a table"])


def _child(node: Any, key: str, where: list[str], source: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, where, source)]
    if isinstance(node, dict):
        if key not in node:
            if not create:
                raise ScenarioError(source, [f"--set {'.'.join(where)}: no such key"])
            node[key] = {}
        return node[key]
    raise ScenarioError(source, [f"--set {'.'.join(where)}: parent is a value, not a table"])


def _list_index(node: list, key: str, where: list[str], source: str) -> int:
    if key.isdigit() and int(key) < len(node):
        return int(key)
    for i, item in enumerate(node):
        if isinstance(item, dict) and key in (item.get("id"), item.get("symbol")):
            return i
    names = [str(it.get("id", it.get("symbol", j))) for j, it in enumerate(node) if isinstance(it, dict)]
    raise ScenarioError(
        source, [f"--set {'.'.join(where)}: no list item {key!r}; allowed: indices 0..{len(node) - 1} or {names}"]
    )


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# --- error formatting ------------------------------------------------------------------------------
def _format_error(err: dict, raw: dict) -> str:
    loc = _named_path(err["loc"], raw)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    ctx = err.get("ctx") or {}
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "literal_error" and "expected" in ctx:
        msg = f"invalid value {err.get('input')!r}; allowed: {ctx['expected']}"
    elif err["type"] == "union_tag_invalid":
        msg = f"invalid kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
    elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
        msg = f"{msg} (got {err['input']!r})"
    return f"{loc}: {msg}" if loc else msg


def _named_path(loc: tuple, raw: dict) -> str:
    """Key path with list indices replaced by the item's id or symbol where it has one."""
    parts, node = [], raw
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            item = node[key]
            name = item.get("id", item.get("symbol")) if isinstance(item, dict) else None
            parts.append(str(name) if name is not None else str(key))
            node = item
        elif isinstance(node, dict) and key in node:
            parts.append(str(key))
            node = node[key]
        elif isinstance(key, str) and key in (
            "lending",
            "borrowers",
            "liquidator",
            "arbitrageur",
            "cdp",
            "perps",
            "options",
            "keeper",
            "traders",
            "perp_liquidator",
            "option_writers",
            "hedgers",
            "protection_buyers",
            "multi_venue",
            "book",
            "mixed_borrowers",
        ):
            continue  # discriminated-union tag inserted by pydantic
        else:
            parts.append(str(key))
            node = None
    return ".".join(parts)


def json_schema() -> dict:
    """The JSON Schema of scenario files."""
    return Scenario.model_json_schema()
