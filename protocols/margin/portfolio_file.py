"""Portfolio files (TOML or JSON) for `defistress margin compare`: a [market] table and [[accounts]].

[market]
  spot, vol (required), rate, perp_price, confidence (spot feed), perp_confidence: tables underlying -> number;
  stable_price: number;
  forwards.<U>: array of tables, one per expiry: expiry_days | expiry_s, forward (USD), and optionally fixed
      (USD part that no longer moves with spot), rate, forward_confidence, rate_confidence, vol_confidence
      (an optional key given for one node is required for all);
  collateral.<asset>: price (USD), confidence, risk_cancelling, mm_haircut, im_haircut (the last three are
      the asset's CollateralParams, passed to the models that take `collaterals`);
  span_arrays.<U>: array of tables: kind (future/call/put), expiry_days | expiry_s, strike, losses (16 USD per
      contract, positive = loss), composite_delta, contract_size, price;
  span_files: array of tables: path (relative to the portfolio file), product, underlying, months (table
      CCYYMM -> days to expiry), value_scale, strike_scale, price_scale, contract_size.
[[accounts]]
  name, cash (USD), margin_currency ("USD" or an underlying: a coin-margined account), positions: array of
  tables kind, underlying, qty, strike, expiry_days | expiry_s, entry_price, asset (collateral rows), funding.

Every error names the key path and the allowed values.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.market import MarketState
from defistress.protocols.margin.portfolio import KIND_NAMES, Portfolio
from defistress.protocols.margin.scenario_params import CollateralParams
from defistress.protocols.margin.span_arrays import ARRAY_KINDS, N_SCENARIOS, PublishedRiskArrays, RiskArray
from defistress.protocols.margin.span_file import read_span_file, risk_arrays

_DAY = 86_400.0
_MARKET_TABLES = ("spot", "vol", "rate", "perp_price", "confidence", "perp_confidence")
_MARKET_KEYS = (*_MARKET_TABLES, "stable_price", "forwards", "collateral", "span_arrays", "span_files")
# Physical ceilings of portfolio numbers, the same as the scenario schema's (protocols/bounds.py documents them;
# protocols.margin keeps its own copy to stay free of the rest of the project): 1e15 for any amount, price or
# cash in USD (ten times world GDP), 1e12 units for a quantity. A number without a tighter bound is within +-MAX_USD.
MAX_USD = 1e15
MAX_QTY = 1e12

_RANGES = {
    "spot": (0.0, MAX_USD),
    "vol": (0.0, 10.0),
    "perp_price": (0.0, MAX_USD),
    "confidence": (0.0, 1.0),
    "perp_confidence": (0.0, 1.0),
    "rate": (-1.0, 1.0),
}
_ACCOUNT_KEYS = ("name", "cash", "margin_currency", "positions")
_POSITION_KEYS = ("kind", "underlying", "qty", "strike", "expiry_days", "expiry_s", "entry_price", "asset", "funding")
_FORWARD_KEYS = (
    "expiry_days",
    "expiry_s",
    "forward",
    "fixed",
    "rate",
    "forward_confidence",
    "rate_confidence",
    "vol_confidence",
)
_FORWARD_OPTIONAL = {
    "fixed": (0.0, math.inf),
    "rate": (-10.0, 10.0),
    "forward_confidence": (0.0, 1.0),
    "rate_confidence": (0.0, 1.0),
    "vol_confidence": (0.0, 1.0),
}
_COLLATERAL_KEYS = ("price", "confidence", "risk_cancelling", "mm_haircut", "im_haircut")
_ARRAY_KEYS = ("kind", "expiry_days", "expiry_s", "strike", "losses", "composite_delta", "contract_size", "price")
_SPAN_FILE_KEYS = (
    "path",
    "product",
    "underlying",
    "months",
    "value_scale",
    "strike_scale",
    "price_scale",
    "contract_size",
)
_TIMED = ("call", "put", "future", "inverse_future")


@dataclass(frozen=True)
class PortfolioFile:
    """A parsed portfolio file: the books, the market and the model overrides the file implies (collaterals)."""

    portfolio: Portfolio
    market: MarketState
    overrides: dict[str, Any] = field(default_factory=dict)


def num(value: Any, path: str, lo: float = -MAX_USD, hi: float = MAX_USD) -> float:
    """A finite number in [lo, hi] (by default within the +-1e15 ceiling), else ValueError naming the key path."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not np.isfinite(value)
        or not lo <= value <= hi
    ):
        raise ValueError(f"{path}={value!r}: allowed a number in [{_bound(lo)}, {_bound(hi)}]")
    return float(value)


def _bound(x: float) -> str:
    """A bound as written in messages: 0.0, 1.0 ... and 1e+12 rather than 1000000000000.0."""
    return str(float(x)) if abs(x) < 1e6 else f"{x:g}"


def read_text_file(path: Path, what: str) -> str:
    """The text of a UTF-8 file; a missing, unreadable, empty or non-UTF-8 file raises ValueError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if not data.strip():
        raise ValueError(f"{path}: the {what} is empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not a {what}: byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8 text"
        ) from None


def keys(table: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The table as a dict, else ValueError naming the first unknown key and the allowed keys."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: allowed a table with keys {list(allowed)}")
    extra = [k for k in table if k not in allowed]
    if extra:
        raise ValueError(f"{path}.{extra[0]}: unknown key; allowed {list(allowed)}")
    return table


def _array(raw: Any, path: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: allowed a non-empty array of tables")
    return raw


def _expiry_s(t: dict[str, Any], path: str, required: bool) -> float:
    if "expiry_days" in t and "expiry_s" in t:
        raise ValueError(f"{path}: allowed only one of expiry_days, expiry_s")
    if "expiry_s" in t:
        return num(t["expiry_s"], f"{path}.expiry_s", 0.0)
    if "expiry_days" in t:
        return num(t["expiry_days"], f"{path}.expiry_days", 0.0) * _DAY
    if required:
        raise ValueError(f"{path}.expiry_days: required (or expiry_s)")
    return 0.0


def _underlying_tables(raw: Any, path: str, spot: dict[str, float]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: allowed a table underlying -> entries")
    for u in raw:
        if u not in spot:
            raise ValueError(f"{path}.{u}: allowed underlyings {list(spot)} (keys of market.spot)")
    return raw


def _forwards(raw: Any, spot: dict[str, float]) -> dict[str, ForwardCurve]:
    out = {}
    for u, nodes in _underlying_tables(raw, "market.forwards", spot).items():
        rows = []
        for i, node in enumerate(_array(nodes, f"market.forwards.{u}")):
            p = f"market.forwards.{u}[{i}]"
            t = keys(node, p, _FORWARD_KEYS)
            if "forward" not in t:
                raise ValueError(f"{p}.forward: required (USD)")
            row = {"expiry_s": _expiry_s(t, p, True), "forward": num(t["forward"], f"{p}.forward", 0.0)}
            for k, (lo, hi) in _FORWARD_OPTIONAL.items():
                if k in t:
                    row[k] = num(t[k], f"{p}.{k}", lo, hi)
            if row.get("fixed", 0.0) > row["forward"]:
                raise ValueError(f"{p}.fixed={row['fixed']}: allowed 0..forward={row['forward']} USD")
            rows.append((i, row))
        rows.sort(key=lambda r: r[1]["expiry_s"])
        for (i, a), (j, b) in zip(rows, rows[1:]):
            if a["expiry_s"] == b["expiry_s"]:
                raise ValueError(f"market.forwards.{u}[{j}]: duplicate expiry of market.forwards.{u}[{i}]")
        kwargs: dict[str, Any] = {}
        for k in _FORWARD_OPTIONAL:
            have = [i for i, r in rows if k in r]
            if have and len(have) != len(rows):
                missing = next(i for i, r in rows if k not in r)
                raise ValueError(f"market.forwards.{u}[{missing}].{k}: required (given for other expiries of {u})")
            if have:
                kwargs[k] = tuple(r[k] for _, r in rows)
        out[u] = ForwardCurve(tuple(r["expiry_s"] for _, r in rows), tuple(r["forward"] for _, r in rows), **kwargs)
    return out


def _collateral(raw: Any) -> tuple[dict[str, float], dict[str, float], dict[str, CollateralParams]]:
    if not isinstance(raw, dict):
        raise ValueError("market.collateral: allowed a table asset -> {price, confidence, ...}")
    price, conf, params = {}, {}, {}
    for a, t in raw.items():
        p = f"market.collateral.{a}"
        t = keys(t, p, _COLLATERAL_KEYS)
        if "price" not in t:
            raise ValueError(f"{p}.price: required (USD per unit)")
        price[str(a)] = num(t["price"], f"{p}.price", 0.0)
        conf[str(a)] = num(t.get("confidence", 1.0), f"{p}.confidence", 0.0, 1.0)
        rc = t.get("risk_cancelling", False)
        if not isinstance(rc, bool):
            raise ValueError(f"{p}.risk_cancelling={rc!r}: allowed true or false")
        try:
            params[str(a)] = CollateralParams(
                rc,
                num(t.get("mm_haircut", 0.0), f"{p}.mm_haircut", 0.0, 1.0),
                num(t.get("im_haircut", 0.0), f"{p}.im_haircut", 0.0, 1.0),
            )
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from e
    return price, conf, params


def _span_arrays(raw: Any, spot: dict[str, float]) -> dict[str, PublishedRiskArrays]:
    out = {}
    for u, rows in _underlying_tables(raw, "market.span_arrays", spot).items():
        arrays = []
        for i, row in enumerate(_array(rows, f"market.span_arrays.{u}")):
            p = f"market.span_arrays.{u}[{i}]"
            t = keys(row, p, _ARRAY_KEYS)
            for req in ("kind", "losses", "composite_delta"):
                if req not in t:
                    raise ValueError(f"{p}.{req}: required")
            if t["kind"] not in ARRAY_KINDS:
                raise ValueError(f"{p}.kind={t['kind']!r}: allowed {list(ARRAY_KINDS)}")
            losses = t["losses"]
            if not isinstance(losses, list) or len(losses) != N_SCENARIOS:
                raise ValueError(f"{p}.losses: allowed an array of {N_SCENARIOS} numbers (USD per contract)")
            try:
                arrays.append(
                    RiskArray(
                        kind=t["kind"],
                        expiry_s=_expiry_s(t, p, True),
                        losses=tuple(num(v, f"{p}.losses[{k}]") for k, v in enumerate(losses)),
                        composite_delta=num(t["composite_delta"], f"{p}.composite_delta", -100.0, 100.0),
                        strike=num(t.get("strike", 0.0), f"{p}.strike", 0.0),
                        contract_size=num(t.get("contract_size", 1.0), f"{p}.contract_size", 1e-12),
                        price=None if "price" not in t else num(t["price"], f"{p}.price", 0.0),
                    )
                )
            except ValueError as e:
                raise ValueError(e.args[0] if str(e).startswith(p) else f"{p}: {e}") from e
        out[u] = PublishedRiskArrays(tuple(arrays))
    return out


def _span_files(raw: Any, spot: dict[str, float], base_dir: Path | None) -> dict[str, PublishedRiskArrays]:
    out: dict[str, list[RiskArray]] = {}
    for i, row in enumerate(_array(raw, "market.span_files")):
        p = f"market.span_files[{i}]"
        t = keys(row, p, _SPAN_FILE_KEYS)
        for req in ("path", "product", "underlying", "months"):
            if req not in t:
                raise ValueError(f"{p}.{req}: required")
        u = str(t["underlying"])
        if u not in spot:
            raise ValueError(f"{p}.underlying={u!r}: allowed {list(spot)} (keys of market.spot)")
        months = t["months"]
        if not isinstance(months, dict) or not months:
            raise ValueError(f"{p}.months: allowed a table contract month (CCYYMM) -> days to expiry")
        expiry = {str(m): num(d, f"{p}.months.{m}", 0.0) * _DAY for m, d in months.items()}
        path = Path(str(t["path"]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ValueError(f"{p}.path={str(t['path'])!r}: no such file ({path})")
        try:
            pub = risk_arrays(
                read_span_file(path),
                str(t["product"]),
                expiry,
                value_scale=num(t.get("value_scale", 1.0), f"{p}.value_scale", 0.0),
                strike_scale=num(t.get("strike_scale", 1.0), f"{p}.strike_scale", 0.0),
                price_scale=num(t.get("price_scale", 1.0), f"{p}.price_scale", 0.0),
                contract_size=num(t.get("contract_size", 1.0), f"{p}.contract_size", 1e-12),
            )
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from e
        out.setdefault(u, []).extend(pub.arrays)
    return {u: PublishedRiskArrays(tuple(a)) for u, a in out.items()}


def _market(raw: Any, base_dir: Path | None) -> tuple[MarketState, dict[str, Any]]:
    t = keys(raw, "market", _MARKET_KEYS)
    for req in ("spot", "vol"):
        if req not in t:
            raise ValueError(f"market.{req}: required (a table underlying -> number)")
    tables: dict[str, dict[str, float]] = {}
    for name in _MARKET_TABLES:
        sub = t.get(name, {})
        if not isinstance(sub, dict):
            raise ValueError(f"market.{name}: allowed a table underlying -> number")
        lo, hi = _RANGES[name]
        tables[name] = {str(u): num(v, f"market.{name}.{u}", lo, hi) for u, v in sub.items()}
    spot = tables["spot"]
    for name in _MARKET_TABLES[1:]:
        for u in tables[name]:
            if u not in spot:
                raise ValueError(f"market.{name}.{u}: allowed underlyings {list(spot)} (keys of market.spot)")
    stable = num(t.get("stable_price", 1.0), "market.stable_price", 0.0, 10.0)
    forwards = _forwards(t["forwards"], spot) if "forwards" in t else {}
    c_price, c_conf, c_params = _collateral(t["collateral"]) if "collateral" in t else ({}, {}, {})
    span = _span_arrays(t["span_arrays"], spot) if "span_arrays" in t else {}
    for u, pub in (_span_files(t["span_files"], spot, base_dir) if "span_files" in t else {}).items():
        span[u] = PublishedRiskArrays(span[u].arrays + pub.arrays) if u in span else pub
    mkt = MarketState(
        spot=spot,
        vol=tables["vol"],
        rate=tables["rate"],
        perp_price=tables["perp_price"],
        stable_price=stable,
        confidence=tables["confidence"],
        perp_confidence=tables["perp_confidence"],
        forwards=forwards,
        collateral_price=c_price,
        collateral_confidence=c_conf,
        span_arrays=span,
    )
    return mkt, ({"collaterals": c_params} if c_params else {})


def _position(raw: Any, path: str, mkt: MarketState) -> dict[str, Any]:
    t = dict(keys(raw, path, _POSITION_KEYS))
    for req in ("kind", "underlying", "qty"):
        if req not in t:
            raise ValueError(f"{path}.{req}: required")
    if t["kind"] not in KIND_NAMES:
        raise ValueError(f"{path}.kind={t['kind']!r}: allowed {list(KIND_NAMES)}")
    if t["underlying"] not in mkt.spot:
        raise ValueError(f"{path}.underlying={t['underlying']!r}: allowed {list(mkt.spot)} (keys of market.spot)")
    if t["kind"] != "collateral" and t["underlying"] not in mkt.vol:
        raise ValueError(f"market.vol.{t['underlying']}: required for {path}")
    t["qty"] = num(t["qty"], f"{path}.qty", -MAX_QTY, MAX_QTY)
    if "expiry_days" in t and "expiry_s" in t:
        raise ValueError(f"{path}: allowed only one of expiry_days, expiry_s")
    for key in ("expiry_days", "expiry_s"):
        if key in t:
            t[key] = num(t[key], f"{path}.{key}", 0.0)
    if t["kind"] in _TIMED and not (t.get("expiry_days", 0) > 0 or t.get("expiry_s", 0) > 0):
        raise ValueError(f"{path}.expiry_days: required > 0 for kind {t['kind']!r}")
    if t["kind"] in ("call", "put"):
        if "strike" not in t:
            raise ValueError(f"{path}.strike: required (> 0 USD) for kind {t['kind']!r}")
        t["strike"] = num(t["strike"], f"{path}.strike", 0.0)
        if t["strike"] <= 0:
            raise ValueError(f"{path}.strike={t['strike']}: allowed > 0 USD")
    if "entry_price" in t:
        t["entry_price"] = num(t["entry_price"], f"{path}.entry_price", 0.0)
    if "funding" in t:
        t["funding"] = num(t["funding"], f"{path}.funding")
    if t["kind"] == "collateral":
        if "asset" not in t:
            raise ValueError(f"{path}.asset: required for kind 'collateral'; allowed {list(mkt.collateral_price)}")
        if t["asset"] not in mkt.collateral_price:
            raise ValueError(
                f"{path}.asset={t['asset']!r}: allowed {list(mkt.collateral_price)} (keys of market.collateral)"
            )
        if t["qty"] < 0:
            raise ValueError(f"{path}.qty={t['qty']}: allowed >= 0 units of the collateral asset")
    elif "asset" in t:
        raise ValueError(f"{path}.asset: allowed only for kind 'collateral'")
    return t


def read_portfolio(doc: Mapping[str, Any], base_dir: Path | None = None) -> PortfolioFile:
    """Validate a parsed portfolio document; errors name the key path and the allowed values."""
    doc = keys(doc, "<file>", ("market", "accounts"))
    if "market" not in doc or "accounts" not in doc:
        raise ValueError("<file>: required keys ['market', 'accounts']")
    mkt, overrides = _market(doc["market"], base_dir)
    if not isinstance(doc["accounts"], list) or not doc["accounts"]:
        raise ValueError("accounts: allowed a non-empty array of tables [[accounts]]")
    records = []
    for i, a in enumerate(doc["accounts"]):
        a = keys(a, f"accounts[{i}]", _ACCOUNT_KEYS)
        name = a.get("name", f"account-{i}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"accounts[{i}].name={name!r}: allowed a non-empty string")
        cur = a.get("margin_currency", "USD")
        if cur != "USD" and cur not in mkt.spot:
            raise ValueError(
                f"accounts[{i}].margin_currency={cur!r}: allowed ['USD', {', '.join(map(repr, mkt.spot))}]"
            )
        pos = a.get("positions", [])
        if not isinstance(pos, list):
            raise ValueError(f"accounts[{i}].positions: allowed an array of tables")
        positions = [_position(p, f"accounts[{i}].positions[{j}]", mkt) for j, p in enumerate(pos)]
        if cur != "USD":
            for j, p in enumerate(positions):
                if p["underlying"] != cur:
                    raise ValueError(
                        f"accounts[{i}].positions[{j}].underlying={p['underlying']!r}: a {cur}-margined account "
                        f"holds positions on {cur!r} only"
                    )
        records.append(
            {
                "name": name,
                "cash": num(a.get("cash", 0.0), f"accounts[{i}].cash"),
                "margin_currency": cur,
                "positions": positions,
            }
        )
    return PortfolioFile(Portfolio.from_records(records, underlyings=tuple(mkt.spot)), mkt, overrides)


def parse_portfolio(doc: Mapping[str, Any], base_dir: Path | None = None) -> tuple[Portfolio, MarketState]:
    """(Portfolio, MarketState) of a parsed portfolio document (see read_portfolio)."""
    f = read_portfolio(doc, base_dir)
    return f.portfolio, f.market


def load_portfolio(path: str | Path) -> PortfolioFile:
    """Read a TOML (.toml) or JSON (.json) portfolio file; errors name the file, the key path and the allowed
    values."""
    path = Path(path)
    text = read_text_file(path, "portfolio file (UTF-8 TOML or JSON)")
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {e}") from e
    try:
        return read_portfolio(doc, path.parent)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def load_portfolio_file(path: str | Path) -> tuple[Portfolio, MarketState]:
    """(Portfolio, MarketState) of a portfolio file (see load_portfolio for the model overrides too)."""
    f = load_portfolio(path)
    return f.portfolio, f.market
