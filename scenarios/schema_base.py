"""What every part of the scenario schema shares: the strict base model, nested-parameter validation that
names its key path, per-account distributions, and the JSON Schema of embedded parameter tables."""

from __future__ import annotations

import collections.abc
import importlib
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, Field, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema as cs

from defistress.scenarios.units import MAX_VALUE, PARAMS_CONFIG, Float


class Strict(BaseModel):
    """Unknown keys refused, frozen, and no NaN or infinity in any float field."""

    model_config = PARAMS_CONFIG


def _validated(model_cls, data: dict, where: str):
    """Validate nested protocol parameters, re-raising with the key path under `where`."""
    from pydantic import ValidationError

    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        msg = error_message(first, model_cls)
        if not loc and msg.split(":", 1)[0] in model_cls.model_fields:  # a model check naming its field first
            raise ValueError(f"{where}.{msg}") from None
        raise ValueError(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}") from None


_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def error_message(err: Any, model: Any = None) -> str:
    """One pydantic error as a sentence that says what is allowed (the caller adds the key path); `model` is the
    validated root model, which lets an unknown key's error list the keys its table accepts."""
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    ctx = err.get("ctx") or {}
    kind, has_input = err["type"], "input" in err
    value = err.get("input")
    if kind == "extra_forbidden":
        keys = allowed_keys(model, tuple(err.get("loc", ()))) if model is not None else None
        return f"unknown key; allowed: {', '.join(keys)}" if keys else "unknown key"
    if kind == "literal_error" and "expected" in ctx:
        return f"invalid value {value!r}; allowed: {ctx['expected']}"
    if kind == "union_tag_invalid":
        return f"invalid kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
    if kind in _BOUND_WORDS and has_input:
        (bound,) = (ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx)
        return (
            f"{value!r} is out of range; allowed: {_BOUND_WORDS[kind]} {bound:g} "
            "(see `defistress schema` for the key's unit and bounds)"
        )
    if kind in ("float_type", "int_type", "bool_type", "string_type", "finite_number") and has_input:
        return f"{_type_message(kind, value)} (got {value!r})"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match the pattern {ctx.get('pattern')}"
    if has_input and kind not in ("missing", "value_error", "assertion_error") and not isinstance(value, (dict, list)):
        return f"{msg} (got {value!r})"
    return msg


def allowed_keys(model: Any, loc: tuple) -> list[str] | None:
    """The keys (field names and aliases) of the table holding `loc[-1]`, found by walking pydantic's error path
    from the root `model` through fields, list items, dict values and tagged unions; None where the path leaves
    the models (a free table)."""
    node: Any = model
    for key in loc[:-1]:
        node = _step(node, key)
        if node is None:
            return None
    table = _model_of(node)
    if table is None:
        return None
    names = {name for name in table.model_fields} | {f.alias for f in table.model_fields.values() if f.alias}
    return sorted(names)


def _model_of(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    members = [m for m in _union_members(tp) if _model_of(m) is not None]
    return _model_of(members[0]) if len(members) == 1 else None


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    if get_origin(tp) in (Union, types.UnionType):
        return [m for m in get_args(tp) if m is not type(None)]
    return []


def _step(tp: Any, key: Any) -> Any:
    """The annotation one step down `tp` along one element of an error path (None when it cannot be followed)."""
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members:
        for m in members:  # pydantic names a tagged union's member by its tag (or class name) in the path
            mm = _model_of(m)
            if mm is not None and isinstance(key, str) and (mm.__name__ == key or _has_tag(m, mm, key)):
                return m
        found = [s for s in (_step(m, key) for m in members) if s is not None]
        return found[0] if found else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            if key in (name, field.alias):
                return field.annotation
        return None
    origin, args = get_origin(tp), get_args(tp)
    if origin in (list, tuple, collections.abc.Sequence) and args and isinstance(key, int):
        return args[0]
    if origin in (dict, collections.abc.Mapping) and len(args) == 2:
        return args[1]
    return None


def _has_tag(member: Any, model: type[BaseModel], key: str) -> bool:
    """Whether a union member is the one pydantic names `key`: its `Tag(...)` or a literal field's value."""
    if get_origin(member) is Annotated and any(getattr(a, "tag", None) == key for a in get_args(member)[1:]):
        return True
    for field in model.model_fields.values():
        ann = _unwrap(field.annotation)
        if get_origin(ann) is Literal and key in get_args(ann):
            return True
    return False


def _type_message(kind: str, value: Any) -> str:
    """What a strict type expects, naming the common mistake (a boolean for a number, a float for a count)."""
    if kind == "finite_number":
        return "must be a finite number"
    if kind == "float_type":
        return "must be a number, not a boolean" if isinstance(value, bool) else "must be a number"
    if kind == "int_type":
        if isinstance(value, bool):
            return "must be a whole number, not a boolean"
        return "must be a whole number (no decimal point)" if isinstance(value, float) else "must be a whole number"
    if kind == "bool_type":
        return "must be true or false"
    return "must be a string"


class ParamsOf:
    """Annotation of a free `params` table: validated later by a protocol's or agent's parameter model, and
    published in the JSON Schema as that model's schema (so every key has its description and bounds).

    `models` are "module:Class" names (several: any of them, by the spec's kind); `partial=True` drops
    `required` (the table overrides a preset, or the spec supplies some fields itself)."""

    def __init__(self, *models: str, partial: bool = False):
        self.models, self.partial = models, partial

    def __get_pydantic_json_schema__(self, schema: cs.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = []
        for name in self.models:
            module, cls = name.split(":")
            model = getattr(importlib.import_module(module), cls)
            ref = handler(model.__pydantic_core_schema__)
            if self.partial:
                target = handler.resolve_ref_schema(ref)
                ref = {k: v for k, v in target.items() if k != "required"}
            out.append(ref)
        return out[0] if len(out) == 1 else {"anyOf": out}


class Distribution(Strict):
    """A random draw per account: lognormal (median, sigma) or uniform (low, high) or a constant, clipped to
    [min, max]. Its unit is the unit of the field it sets (USD for sizes, a ratio for health factors)."""

    distribution: Literal["lognormal", "uniform", "constant"] = Field(
        "lognormal", description="shape of the draw: lognormal (median, sigma), uniform (low, high) or constant (value)"
    )
    median: Float | None = Field(
        None, gt=0, le=MAX_VALUE, description="median of a lognormal draw, in the field's unit"
    )
    sigma: Float = Field(0.5, ge=0, le=10, description="standard deviation of the log of a lognormal draw (unitless)")
    low: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="lower end of a uniform draw, in the field's unit"
    )
    high: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="upper end of a uniform draw, in the field's unit"
    )
    value: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="the value of a constant draw, in the field's unit"
    )
    min: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="draws below this are raised to it, in the field's unit"
    )
    max: Float | None = Field(
        None, ge=-MAX_VALUE, le=MAX_VALUE, description="draws above this are lowered to it, in the field's unit"
    )

    @model_validator(mode="after")
    def _check(self):
        need = {"lognormal": ("median",), "uniform": ("low", "high"), "constant": ("value",)}[self.distribution]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"distribution '{self.distribution}' needs {missing}")
        if self.distribution == "uniform" and self.high is not None and self.low is not None and self.high <= self.low:
            raise ValueError("uniform distribution: 'high' must be greater than 'low'")
        if self.min is not None and self.max is not None and self.max < self.min:
            raise ValueError("distribution: 'max' must be >= 'min'")
        return self

    def lowest(self) -> float:
        """The smallest value a draw can take (lognormal draws approach 0 without a `min`)."""
        natural = {"lognormal": 0.0, "uniform": self.low, "constant": self.value}[self.distribution]
        assert natural is not None  # `_check` guarantees the chosen distribution's parameters
        return float(natural if self.min is None else max(natural, self.min))

    def highest(self) -> float:
        """The largest value a draw can take (a lognormal without `max` is capped at MAX_VALUE)."""
        natural = {"lognormal": MAX_VALUE, "uniform": self.high, "constant": self.value}[self.distribution]
        assert natural is not None  # `_check` guarantees the chosen distribution's parameters
        return float(natural if self.max is None else min(natural, self.max))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws, clipped to [min, max] and to +-MAX_VALUE (a lognormal tail must not overflow)."""
        # `_check` guarantees the parameters of the chosen distribution are set
        if self.distribution == "lognormal":
            assert self.median is not None
            x = self.median * np.exp(self.sigma * rng.standard_normal(n))
        elif self.distribution == "uniform":
            assert self.low is not None and self.high is not None
            x = rng.uniform(self.low, self.high, n)
        else:
            assert self.value is not None
            x = np.full(n, float(self.value))
        lo = -MAX_VALUE if self.min is None else self.min
        hi = MAX_VALUE if self.max is None else self.max
        return np.clip(x, lo, hi)
