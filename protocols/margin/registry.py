"""Preset name -> model factory. Modules register their presets; rules.py is imported lazily."""
from __future__ import annotations

import importlib
from typing import Any, Callable

_FACTORIES: dict[str, Callable[..., Any]] = {}
# modules that register presets when imported (order is irrelevant); missing ones are skipped
_PRESET_MODULES: tuple[str, ...] = (
    "protocols.margin.presets_pm", "protocols.margin.span", "protocols.margin.rules",
)
_loaded = False


def register(name: str, factory: Callable[..., Any]) -> None:
    """Register a preset; `factory(**overrides)` returns a model with `requirements(pf, mkt)`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name={name!r}: allowed a non-empty string")
    _FACTORIES[name] = factory


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _PRESET_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a helper's module not written yet
            if e.name != mod:
                raise
    _loaded = True


def list_models() -> list[str]:
    """Sorted preset names."""
    _load()
    return sorted(_FACTORIES)


def get_model(name: str, **overrides: Any) -> Any:
    """Build the preset `name`; keyword overrides go to its params. Unknown names raise ValueError."""
    _load()
    if name not in _FACTORIES:
        raise ValueError(f"model name={name!r}: allowed {sorted(_FACTORIES)}")
    return _FACTORIES[name](**overrides)
