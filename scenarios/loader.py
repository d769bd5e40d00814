"""Load a scenario from a built-in name, a TOML file or a dict; apply `--set` overrides; validate.

Every problem is reported as a `ScenarioError` holding one line per error: the key path (with list
items named by their id where they have one) and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defistress.scenarios.registry import builtin_names, builtin_path

if TYPE_CHECKING:  # the schema (pydantic models, numpy) loads on first use: `defistress --help` stays quick
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
    #: the overrides applied on top of the source, in order, as "key.path=value" strings
    overrides: tuple[str, ...] = ()

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


#: overrides: "key.path=value" strings (values parsed as TOML), or a mapping {"key.path": value}
Overrides = Sequence[str] | Mapping[str, Any] | None


def load(ref: str | Path | dict | Scenario | LoadedScenario, overrides: Overrides = None) -> LoadedScenario:
    """Load and validate a scenario given by built-in name, TOML path, raw dict or model.

    `overrides` are "key.path=value" strings (as `--set`) or a dict {"key.path": value}
    (e.g. {"agents.borrowers.accounts": 500}); both are recorded in `LoadedScenario.overrides`."""
    items = normalise_overrides(overrides)
    before: tuple[str, ...] = ()
    from pydantic import ValidationError

    from defistress.scenarios.schema import Scenario

    if isinstance(ref, LoadedScenario):
        if not items:
            return ref
        raw, source, base, before = copy.deepcopy(ref.raw), ref.source, ref.base_dir, ref.overrides
    elif isinstance(ref, Scenario):
        raw, source, base = ref.model_dump(mode="json"), f"<{ref.run.name}>", Path.cwd()
    elif isinstance(ref, dict):
        raw, source, base = copy.deepcopy(ref), "<dict>", Path.cwd()
    else:
        path = _locate(str(ref))
        source, base = str(path), path.parent
        raw = _read_toml(path, source)
    for key, value in items:
        set_key(raw, key, value, source)
    bad = non_finite(raw)
    if bad:
        raise ScenarioError(
            source,
            [
                f"{_named_path(loc, raw)}: {value!r} is not a finite number; allowed: finite numbers within the "
                "key's bounds (see `defistress schema`)"
                for loc, value in bad
            ],
        )
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(source, [_format_error(e, raw) for e in exc.errors()]) from None
    loaded = LoadedScenario(scenario, source, base, raw, before + tuple(_override_text(k, v) for k, v in items))
    _check_data_files(loaded)
    if not isinstance(ref, LoadedScenario) or any(k.split(".")[0] == "uncertain" for k, _ in items):
        _check_uncertain_ends(loaded)
    return loaded


def _check_uncertain_ends(loaded: LoadedScenario) -> None:
    """Every end of every uncertain input's range (every value of a set) must make a valid scenario, so that a
    replay's design never draws a point the scenario refuses; the error names the input and the key."""
    errors = []
    for u in loaded.scenario.uncertain:
        where = "range" if u.range is not None else "values"
        for value in u.ends():
            try:
                load(loaded, {k: value for k in u.keys})
            except ScenarioError as exc:
                errors += [
                    f"uncertain.{u.name}.{where}: {value!r} at {', '.join(u.keys)} is refused: {e}" for e in exc.errors
                ]
    if errors:
        raise ScenarioError(loaded.source, errors)


def _read_toml(path: Path, source: str) -> dict:
    """The TOML document at `path`; a file that is unreadable, not UTF-8 or not TOML is a ScenarioError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            source,
            [f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): scenario files are UTF-8 TOML"],
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [f"malformed TOML: {exc}"]) from None


def non_finite(node: Any, loc: tuple = ()) -> list[tuple[tuple, float]]:
    """(key path, value) of every NaN or infinite number in a raw document."""
    if isinstance(node, float):
        return [] if math.isfinite(node) else [(loc, node)]
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in non_finite(v, (*loc, k))]
    if isinstance(node, (list, tuple)):
        return [x for i, v in enumerate(node) for x in non_finite(v, (*loc, i))]
    return []


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
    from defistress.scenarios.schema_books import BookSpec

    s = loaded.scenario
    files = [] if s.market.replay is None else s.market.replay.data_files()
    if s.gas.replay is not None:
        files.append(("gas.replay.file", s.gas.replay.file))
    files += [(f"agents.{a.id}.file", a.file) for a in s.agents if isinstance(a, BookSpec)]
    for key, f in files:
        try:
            loaded.resolve_data(f)
        except ScenarioError as exc:  # name the key that points at the missing file
            raise ScenarioError(exc.source, [f"{key}: {e}" for e in exc.errors]) from None


# --- overrides -----------------------------------------------------------------------------------
def normalise_overrides(overrides: Overrides) -> list[tuple[str, Any]]:
    """(key path, value) pairs from "key=value" strings (TOML-typed values) or a {key: value} mapping."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        out = []
        for k, v in overrides.items():
            if not isinstance(k, str) or not k.strip():
                raise ScenarioError("overrides", [f"override key {k!r}: expected a key path like 'run.duration'"])
            out.append((k.strip(), v))
        return out
    if isinstance(overrides, str):
        raise ScenarioError("overrides", [f"overrides {overrides!r}: give a list of 'key=value' strings or a dict"])
    out = []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ScenarioError("--set", [f"--set {item!r}: expected key.path=value"])
        path, value_text = item.split("=", 1)
        out.append((path.strip(), _parse_value(value_text.strip())))
    return out


def _override_text(key: str, value: Any) -> str:
    """An override as the "key=value" text that reproduces it (value in TOML syntax where possible)."""
    return f"{key}={_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def apply_override(raw: dict, item: str, source: str = "--set") -> None:
    """Apply one `a.b.c=value` override in place; list items may be addressed by index or by id/symbol."""
    if "=" not in item:
        raise ScenarioError(source, [f"--set {item!r}: expected key.path=value"])
    path, value_text = item.split("=", 1)
    set_key(raw, path, _parse_value(value_text.strip()), source)


def set_key(raw: dict, path: str, value: Any, source: str = "--set") -> None:
    """Set `value` at the dotted key `path` in place; list items may be addressed by index or by id/symbol."""
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise ScenarioError(source, [f"--set {path!r}: empty key path"])
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
def _format_error(err: Mapping[str, Any], raw: dict) -> str:
    from defistress.scenarios.schema import Scenario
    from defistress.scenarios.schema_base import error_message

    loc = _named_path(err["loc"], raw)
    msg = error_message(err, Scenario)
    if loc and (msg.startswith(loc + ".") or msg.startswith(loc + ":")):
        return msg  # a cross-field check that already names its key under this table
    return f"{loc}: {msg}" if loc else msg


def _named_path(loc: tuple, raw: dict) -> str:
    """Key path with list indices replaced by the item's id or symbol where it has one."""
    from defistress.scenarios.schema_compound import UNION_TAGS
    from defistress.scenarios.schema_governance import UNION_TAGS as GOVERNANCE_TAGS
    from defistress.scenarios.schema_oracles import UNION_TAGS as ORACLE_TAGS

    parts: list[str] = []
    node: Any = raw  # the raw value at the path so far (None once the path leaves the raw data)
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
            "vaults",
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
            "llamma",
            "peg_keeper",
            "stableswap",
            "constant_product",
            "llamma_arbitrageur",
            "llamma_liquidator",
            "peg_keeper_caller",
            *GOVERNANCE_TAGS,
            *ORACLE_TAGS,
            *UNION_TAGS,
        ):
            continue  # discriminated-union tag inserted by pydantic
        else:
            parts.append(str(key))
            node = None
    return ".".join(parts)


def json_schema() -> dict:
    """The JSON Schema of scenario files (strict JSON: a default of +inf, meaning "no ceiling", is left out)."""
    from defistress.scenarios.schema import Scenario

    return _finite_defaults(Scenario.model_json_schema())


def _finite_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _finite_defaults(v)
            for k, v in node.items()
            if not (k == "default" and isinstance(v, float) and not math.isfinite(v))
        }
    if isinstance(node, list):
        return [_finite_defaults(v) for v in node]
    return node


def schema_text() -> str:
    """The JSON Schema as published: indented strict JSON with a final newline."""
    return json.dumps(json_schema(), indent=2, allow_nan=False) + "\n"


#: the published JSON Schema, regenerated with `defistress schema --out scenarios/schema.json --force`
SCHEMA_FILE = Path(__file__).parent / "schema.json"
