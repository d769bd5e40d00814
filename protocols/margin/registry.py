"""Preset name -> model factory: the store that preset modules register into when imported.

This module imports nothing of the library, so every preset module can register here without a cycle;
`protocols.margin.catalog` imports the preset modules and is what callers use to list and build models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_FACTORIES: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any]) -> None:
    """Register a preset; `factory(**overrides)` returns a model with `requirements(pf, mkt)`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name={name!r}: allowed a non-empty string")
    _FACTORIES[name] = factory


def registered() -> list[str]:
    """Sorted names registered so far (only the preset modules already imported)."""
    return sorted(_FACTORIES)


def build(name: str, **overrides: Any) -> Any:
    """Build a registered preset (its module already imported); unknown names raise ValueError."""
    if name not in _FACTORIES:
        raise ValueError(f"model name={name!r}: allowed {sorted(_FACTORIES)}")
    return _FACTORIES[name](**overrides)
