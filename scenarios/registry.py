"""Built-in scenarios: every `scenarios/builtin/NAME.toml`, listed by name with its description."""

from __future__ import annotations

import tomllib
from pathlib import Path

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def builtin_path(name: str) -> Path | None:
    p = BUILTIN_DIR / f"{name}.toml"
    return p if p.is_file() else None


def describe_builtins() -> list[tuple[str, str]]:
    """(name, one-line description) of every built-in scenario."""
    out = []
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        run = tomllib.loads(path.read_text()).get("run", {})
        out.append((path.stem, run.get("description", "")))
    return out
