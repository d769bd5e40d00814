"""Preset name -> model factory. Modules register their presets when imported; they are imported lazily.

margin-core's presets (presets_pm.py, span.py) load first; rules.py (margin-risk) loads when a name is not
found among them, or for `list_models()`. An import error in a module surfaces when that module is needed.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

_FACTORIES: dict[str, Callable[..., Any]] = {}
_CORE_MODULES: tuple[str, ...] = ("protocols.margin.presets_pm", "protocols.margin.span")
_OTHER_MODULES: tuple[str, ...] = ("protocols.margin.rules",)
_loaded: set[str] = set()


def register(name: str, factory: Callable[..., Any]) -> None:
    """Register a preset; `factory(**overrides)` returns a model with `requirements(pf, mkt)`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"name={name!r}: allowed a non-empty string")
    _FACTORIES[name] = factory


def _load(modules: tuple[str, ...]) -> None:
    for mod in modules:
        if mod in _loaded:
            continue
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a helper's module not written (yet): nothing to register
            if e.name != mod:
                raise
        _loaded.add(mod)


def list_models() -> list[str]:
    """Sorted preset names of every model module."""
    _load(_CORE_MODULES + _OTHER_MODULES)
    return sorted(_FACTORIES)


def get_model(name: str, **overrides: Any) -> Any:
    """Build the preset `name`; keyword overrides go to its params. Unknown names raise ValueError."""
    _load(_CORE_MODULES)
    if name not in _FACTORIES:
        _load(_OTHER_MODULES)
    if name not in _FACTORIES:
        raise ValueError(f"model name={name!r}: allowed {sorted(_FACTORIES)}")
    return _FACTORIES[name](**overrides)


def check_model_name(name: str, field: str) -> str:
    """`name` if it is a preset, else ValueError naming `field` and the allowed names (for params validators)."""
    allowed = list_models()
    if name not in allowed:
        raise ValueError(f"{field}={name!r}: allowed {allowed}")
    return name
