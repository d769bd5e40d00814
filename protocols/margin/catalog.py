"""Every margin preset by name: imports the preset modules (lazily, on first use) and builds models.

Every preset module is imported before a model is built, so a model made of other presets (a hybrid's rule
and risk legs) finds them whichever module registered it first.
"""

from __future__ import annotations

import importlib
from typing import Any

from defistress.protocols.margin import registry

_CORE_MODULES: tuple[str, ...] = ("defistress.protocols.margin.presets_pm", "defistress.protocols.margin.span")
_OTHER_MODULES: tuple[str, ...] = (
    "defistress.protocols.margin.rules",
    "defistress.protocols.margin.rules_options",
    "defistress.protocols.margin.var",
    "defistress.protocols.margin.dynamic",
    "defistress.protocols.margin.greeks_margin",
)


def _load(modules: tuple[str, ...]) -> None:
    for mod in modules:
        importlib.import_module(mod)


def list_models() -> list[str]:
    """Sorted preset names of every model module."""
    _load(_CORE_MODULES + _OTHER_MODULES)
    return registry.registered()


def get_model(name: str, **overrides: Any) -> Any:
    """Build the preset `name`; keyword overrides go to its params. Unknown names raise ValueError."""
    _load(_CORE_MODULES + _OTHER_MODULES)
    return registry.build(name, **overrides)


def check_model_name(name: str, field: str) -> str:
    """`name` if it is a preset, else ValueError naming `field` and the allowed names (for params validators)."""
    allowed = list_models()
    if name not in allowed:
        raise ValueError(f"{field}={name!r}: allowed {allowed}")
    return name
