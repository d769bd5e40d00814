"""The parameters a run used, as tables a risk committee reads first: per protocol, one row per asset (or market)
with its risk parameters and one list of protocol-wide settings; the oracles; the liquidating agents; the shock.

Read from the validated scenario (after overrides, presets resolved: a CDP's `cdp_params()`, a perp DEX's
`dex_params()`), never from a run's state. Each value keeps the schema's description as its tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

#: fields that are wiring rather than parameters (the network figure shows them)
WIRING = {"id", "kind", "oracles", "params", "preset"}
#: methods of a protocol spec that return its resolved parameter model (the preset with `params` applied)
RESOLVERS = ("cdp_params", "dex_params", "venue_params")
#: agent kinds whose settings decide liquidations (shown in the liquidators table)
LIQUIDATING = ("liquidator", "keeper", "llamma_liquidator", "collateral_buyer", "absorber")
#: agent fields shown for liquidating agents (those present)
AGENT_FIELDS = (
    "count",
    "capital_usd",
    "funding",
    "min_profit_usd",
    "latency_blocks",
    "max_tx_per_block",
    "private_orderflow",
    "gas_budget_eth",
)


@dataclass
class ParamTable:
    """One protocol's parameters: `rows` per asset (asset -> column -> value), `settings` protocol-wide."""

    protocol: str
    kind: str
    columns: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


def describe(model: type[BaseModel] | BaseModel, prefix: str = "") -> dict[str, str]:
    """Dotted field name -> description of a pydantic model and the models nested in it."""
    cls = model if isinstance(model, type) else type(model)
    out: dict[str, str] = {}
    for name, f in cls.model_fields.items():
        key = f"{prefix}{name}"
        if f.description:
            out[key] = f.description
        for sub in _model_types(f.annotation):
            out.update({k: v for k, v in describe(sub, f"{key}.").items() if k not in out})
    return out


def _model_types(annotation) -> list[type[BaseModel]]:
    """Pydantic model classes inside a type annotation (X, X | None, dict[str, X], list[X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out = []
    for a in getattr(annotation, "__args__", ()) or ():
        out += _model_types(a)
    return out


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys; lists of scalars kept as lists; None dropped."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        elif v is not None:
            out[key] = v
    return out


def protocol_table(spec, assets: set[str]) -> ParamTable:
    """The parameter table of one protocol spec; `assets` are the run's market symbols (keys that are assets
    become rows)."""
    t = ParamTable(spec.id, spec.kind)
    t.descriptions = describe(spec)
    data = spec.model_dump(mode="json")
    for name in RESOLVERS:
        if hasattr(spec, name):
            resolved = getattr(spec, name)()
            data = {**data, **resolved.model_dump(mode="json")}
            t.descriptions.update({k: v for k, v in describe(resolved).items() if k not in t.descriptions})
            break
    oracles = getattr(spec, "oracles", {}) or {}
    for key, value in data.items():
        if key in WIRING:
            continue
        if (
            isinstance(value, dict)
            and value
            and set(value) <= assets
            and all(isinstance(v, dict) for v in value.values())
        ):
            for asset, row in value.items():  # e.g. a lending market's `assets` table
                _row(t, asset).update(flatten(row))
            _describe_rows(t, key)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "asset" in v for v in value):
            for row in value:  # e.g. a perp DEX's `markets`
                _row(t, row["asset"]).update({k: v for k, v in flatten(row).items() if k != "asset"})
            _describe_rows(t, key)
        elif isinstance(value, dict):
            t.settings.update(flatten(value, f"{key}."))
        elif isinstance(value, list):
            if value and all(not isinstance(v, (dict, list)) for v in value):
                t.settings[key] = ", ".join(str(v) for v in value)
        elif value is not None:
            t.settings[key] = value
    for asset, oid in oracles.items():
        _row(t, asset)["oracle"] = oid
    t.columns = list(dict.fromkeys(c for r in t.rows.values() for c in r))
    if "oracle" in t.columns:  # the oracle first: where the protocol's prices come from
        t.columns.remove("oracle")
        t.columns.insert(0, "oracle")
    return t


def _row(t: ParamTable, asset: str) -> dict[str, Any]:
    return t.rows.setdefault(asset, {})


def _describe_rows(t: ParamTable, key: str) -> None:
    """Column descriptions of per-asset rows: 'assets.ltv' (from the schema) -> 'ltv'."""
    for k, v in list(t.descriptions.items()):
        if k.startswith(f"{key}."):
            t.descriptions.setdefault(k[len(key) + 1 :], v)


def parameter_tables(scenario) -> list[ParamTable]:
    """One ParamTable per protocol of the scenario."""
    assets = {a.symbol for a in scenario.market.assets}
    return [protocol_table(p, assets) for p in scenario.protocols]


def oracle_rows(scenario) -> list[dict[str, Any]]:
    """One dict per oracle: id, asset, kind and its publishing settings."""
    out = []
    for o in scenario.oracles:
        d = {k: v for k, v in flatten(o.model_dump(mode="json")).items() if k not in ("id",)}
        out.append({"id": o.id, **d})
    return out


def agent_rows(scenario) -> list[dict[str, Any]]:
    """The liquidating agents: id, kind and the settings that decide when they act."""
    out = []
    for a in scenario.agents:
        if a.kind not in LIQUIDATING:
            continue
        d: dict[str, Any] = {"id": a.id, "kind": a.kind}
        src = a.model_dump(mode="json")
        params = src.get("params") if isinstance(src.get("params"), dict) else {}
        for k in AGENT_FIELDS:
            v = src.get(k, params.get(k))
            if v is not None:
                d[k] = v
        served = getattr(a, "shared_with", None) or [getattr(a, "protocol", None)]
        d["serves"] = ", ".join(x for x in served if x) or "every protocol of its kind"
        out.append(d)
    return out


def shock_rows(scenario) -> list[dict[str, Any]]:
    """The scheduled shocks, one dict each (times in seconds), in schedule order."""
    return [{k: v for k, v in s.model_dump(mode="json").items() if v is not None} for s in scenario.shocks]


def market_rows(scenario) -> list[dict[str, Any]]:
    """Each market asset's start price or peg, volatility, drift, jumps and depth."""
    out = []
    for a in scenario.market.assets:
        d: dict[str, Any] = {"asset": a.symbol}
        if a.peg is not None:
            d["peg_usd"] = a.peg
        elif a.price is not None:
            d["price_usd"] = a.price
        if a.volatility:
            d["volatility"] = a.volatility
        if a.drift:
            d["drift"] = a.drift
        if a.jumps is not None:
            d["jumps_per_year"] = a.jumps.intensity_per_year
        depth = scenario.market.depth.get(a.symbol)
        if depth is not None:
            d["depth_usd_for_1pct"] = depth.usd_for_1pct
        if scenario.market.replay is not None and a.symbol in scenario.market.replay.symbols:
            d["replayed_from"] = scenario.market.replay.symbols[a.symbol]
        out.append(d)
    return out
