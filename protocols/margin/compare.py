"""Compare margin models side by side on the same books, read portfolio files and historic price paths, plot.

Portfolio files (TOML or JSON) hold a [market] table and [[accounts]] in the record form of Portfolio.from_records.
Historic price files follow scenarios/historic/data: '#' comment lines, then a long-format CSV with
timestamp_utc,symbol,venue,open,high,low,close,... . Plotting is matplotlib object-oriented (imported lazily;
never plt.show()), with the Okabe-Ito colour-blind-safe palette.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.protocols.margin.catalog import get_model, list_models
from defistress.protocols.margin.portfolio import KIND_NAMES, MarketState, Portfolio

PRICE_COLUMNS = ("timestamp_utc", "symbol", "venue", "open", "high", "low", "close")
_MARKET_TABLES = ("spot", "vol", "rate", "perp_price", "confidence")
_MARKET_KEYS = (*_MARKET_TABLES, "stable_price")
_ACCOUNT_KEYS = ("name", "cash", "positions")
_POSITION_KEYS = ("kind", "underlying", "qty", "strike", "expiry_days", "expiry_s", "entry_price")
# Physical ceilings of portfolio numbers, the same as the scenario schema's (protocols/bounds.py documents them;
# protocols.margin keeps its own copy to stay free of the rest of the project): 1e15 USD for prices, strikes and
# cash (ten times world GDP), 1e12 units for a quantity, ten years for an expiry.
MAX_USD = 1e15
MIN_PRICE_USD = 1e-9
MAX_QTY = 1e12
MAX_EXPIRY_DAYS = 3650.0


# ---------------------------------------------------------------------------------------------- compare
def build_model(name: str, overrides: Mapping[str, Any] | None = None):
    """Build preset `name` with only those overrides its params dataclass accepts (e.g. a return history given
    to every model of a comparison reaches only the history-based ones)."""
    model = get_model(name)
    params = getattr(model, "params", None)
    if not overrides or params is None or not dataclasses.is_dataclass(params):
        return model
    ok = {f.name for f in dataclasses.fields(params)}
    kept = {k: v for k, v in overrides.items() if k in ok}
    return get_model(name, **kept) if kept else model


def main_driver(drivers: Mapping[str, np.ndarray], n: int) -> list[str]:
    """Per account, the name (without _usd) of the largest positive USD driver; 'none' if there is none.
    Integer drivers (counts, flags) and native_* results are not requirement components."""
    names, cols = [], []
    for k, v in drivers.items():
        v = np.asarray(v)
        if v.shape == (n,) and v.dtype.kind == "f" and not k.startswith("native_"):
            names.append(k.removesuffix("_usd"))
            cols.append(v)
    if not cols:
        return ["none"] * n
    m = np.column_stack(cols)
    best = m.argmax(axis=1)
    return [names[b] if m[i, b] > 0 else "none" for i, b in enumerate(best)]


def compare(
    pf: Portfolio, mkt: MarketState, models: list[str], overrides: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Tidy table, one row per (account, model): im_usd, mm_usd, equity_usd, excess_mm_usd, main_driver.
    `overrides` go to every model whose params accept them (see build_model)."""
    allowed = list_models()
    unknown = [m for m in models if m not in allowed]
    if unknown:
        raise ValueError(f"models={unknown}: unknown; allowed {allowed}")
    labels = list(pf.labels) if pf.labels else [f"account-{i}" for i in range(pf.n_accounts)]
    frames = []
    for name in models:
        res = build_model(name, overrides).requirements(pf, mkt)
        frames.append(
            pd.DataFrame(
                {
                    "account": labels,
                    "model": name,
                    "im_usd": res.im,
                    "mm_usd": res.mm,
                    "equity_usd": res.equity,
                    "excess_mm_usd": res.equity - res.mm,
                    "main_driver": main_driver(res.drivers, pf.n_accounts),
                }
            )
        )
    cols = ["account", "model", "im_usd", "mm_usd", "equity_usd", "excess_mm_usd", "main_driver"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


# ---------------------------------------------------------------------------------------------- portfolio files
def _num(value: Any, path: str, lo: float = -np.inf, hi: float = np.inf) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not np.isfinite(value)
        or not lo <= value <= hi
    ):
        raise ValueError(f"{path}={value!r}: allowed a number in [{lo:g}, {hi:g}]")
    return float(value)


def _keys(table: Any, path: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{path}: allowed a table with keys {list(allowed)}")
    extra = [k for k in table if k not in allowed]
    if extra:
        raise ValueError(f"{path}.{extra[0]}: unknown key; allowed {list(allowed)}")
    return table


def _market(raw: Any) -> MarketState:
    t = _keys(raw, "market", _MARKET_KEYS)
    for req in ("spot", "vol"):
        if req not in t:
            raise ValueError(f"market.{req}: required (a table underlying -> number)")
    tables = {}
    for name in _MARKET_TABLES:
        sub = t.get(name, {})
        if not isinstance(sub, dict):
            raise ValueError(f"market.{name}: allowed a table underlying -> number")
        lo, hi = {
            "spot": (MIN_PRICE_USD, MAX_USD),
            "vol": (0, 10),
            "perp_price": (MIN_PRICE_USD, MAX_USD),
            "confidence": (0, 1),
        }.get(name, (-1, 1))
        tables[name] = {str(u): _num(v, f"market.{name}.{u}", lo, hi) for u, v in sub.items()}
    stable = _num(t.get("stable_price", 1.0), "market.stable_price", 0.0, 10.0)
    return MarketState(
        spot=tables["spot"],
        vol=tables["vol"],
        rate=tables["rate"],
        perp_price=tables["perp_price"],
        stable_price=stable,
        confidence=tables["confidence"],
    )


def _position(raw: Any, path: str, mkt: MarketState) -> dict:
    t = dict(_keys(raw, path, _POSITION_KEYS))
    for req in ("kind", "underlying", "qty"):
        if req not in t:
            raise ValueError(f"{path}.{req}: required")
    if t["kind"] not in KIND_NAMES:
        raise ValueError(f"{path}.kind={t['kind']!r}: allowed {list(KIND_NAMES)}")
    if t["underlying"] not in mkt.spot:
        raise ValueError(f"{path}.underlying={t['underlying']!r}: allowed {list(mkt.spot)} (keys of market.spot)")
    if t["underlying"] not in mkt.vol:
        raise ValueError(f"market.vol.{t['underlying']}: required for {path}")
    t["qty"] = _num(t["qty"], f"{path}.qty", -MAX_QTY, MAX_QTY)
    timed = t["kind"] in ("call", "put", "future")
    if "expiry_days" in t and "expiry_s" in t:
        raise ValueError(f"{path}: allowed only one of expiry_days, expiry_s")
    for key in ("expiry_days", "expiry_s"):
        if key in t:
            t[key] = _num(t[key], f"{path}.{key}", 0.0, MAX_EXPIRY_DAYS * (86_400.0 if key == "expiry_s" else 1.0))
    if timed and not (t.get("expiry_days", 0) > 0 or t.get("expiry_s", 0) > 0):
        raise ValueError(f"{path}.expiry_days: required > 0 for kind {t['kind']!r}")
    if t["kind"] in ("call", "put"):
        if "strike" not in t:
            raise ValueError(f"{path}.strike: required (> 0 USD) for kind {t['kind']!r}")
        t["strike"] = _num(t["strike"], f"{path}.strike", 0.0, MAX_USD)
        if t["strike"] <= 0:
            raise ValueError(f"{path}.strike={t['strike']}: allowed > 0 USD")
    if "entry_price" in t:
        t["entry_price"] = _num(t["entry_price"], f"{path}.entry_price", 0.0, MAX_USD)
    return t


def parse_portfolio(doc: Mapping[str, Any]) -> tuple[Portfolio, MarketState]:
    """Validate a parsed portfolio document; errors name the key path and the allowed values."""
    doc = _keys(doc, "<file>", ("market", "accounts"))
    if "market" not in doc or "accounts" not in doc:
        raise ValueError("<file>: required keys ['market', 'accounts']")
    mkt = _market(doc["market"])
    if not isinstance(doc["accounts"], list) or not doc["accounts"]:
        raise ValueError("accounts: allowed a non-empty array of tables [[accounts]]")
    records = []
    for i, a in enumerate(doc["accounts"]):
        a = _keys(a, f"accounts[{i}]", _ACCOUNT_KEYS)
        name = a.get("name", f"account-{i}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"accounts[{i}].name={name!r}: allowed a non-empty string")
        pos = a.get("positions", [])
        if not isinstance(pos, list):
            raise ValueError(f"accounts[{i}].positions: allowed an array of tables")
        records.append(
            {
                "name": name,
                "cash": _num(a.get("cash", 0.0), f"accounts[{i}].cash", -MAX_USD, MAX_USD),
                "positions": [_position(p, f"accounts[{i}].positions[{j}]", mkt) for j, p in enumerate(pos)],
            }
        )
    return Portfolio.from_records(records, underlyings=tuple(mkt.spot)), mkt


def load_portfolio_file(path: str | Path) -> tuple[Portfolio, MarketState]:
    """Read a TOML (.toml) or JSON (.json) portfolio file with a [market] table and [[accounts]]."""
    path = Path(path)
    text = read_text_file(path, "portfolio file (UTF-8 TOML or JSON)")
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {e}") from e
    try:
        return parse_portfolio(doc)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


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


# ---------------------------------------------------------------------------------------------- price paths
def returns_from_prices(
    prices: pd.DataFrame, underlyings: tuple[str, ...] | list[str], venue: str | None = None
) -> tuple[dict[str, np.ndarray], float]:
    """Log returns of the close per underlying (first symbol 'U-...' found), on the timestamps common to all,
    and the step length in days."""
    series = {}
    for u in underlyings:
        syms = sorted(s for s in prices["symbol"].unique() if underlying_of(s) == u)
        if not syms:
            raise ValueError(f"history: no symbol for underlying {u!r}; allowed {sorted(prices['symbol'].unique())}")
        sel = prices[prices["symbol"] == syms[0]]
        v = venue if venue in set(sel["venue"]) else sorted(sel["venue"].unique())[0]
        series[u] = price_series(prices, syms[0], v)
    frame = pd.concat(series, axis=1, join="inner").sort_index()
    if len(frame) < 3:
        raise ValueError("history: fewer than 3 common timestamps across the underlyings")
    step_days = float(np.median((frame.index[1:] - frame.index[:-1]).total_seconds())) / 86_400.0
    rets = np.log(frame).diff().iloc[1:]
    return {u: rets[u].to_numpy() for u in underlyings}, step_days


def load_price_path(path: str | Path) -> pd.DataFrame:
    """Tidy long frame (timestamp_utc UTC, symbol, venue, open, high, low, close[, volume_base]) sorted by symbol,
    venue, time. A missing column or an empty/NaN value raises ValueError naming the file, line and column."""
    path = Path(path)
    lines = read_text_file(path, "price file (UTF-8 CSV)").splitlines()
    n_comment = 0
    while n_comment < len(lines) and lines[n_comment].startswith("#"):
        n_comment += 1
    if n_comment == len(lines):
        raise ValueError(f"{path}: no header line and no data (the file is empty or only comments)")
    try:
        df = pd.read_csv(path, skiprows=n_comment, skip_blank_lines=False, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: cannot be read as CSV: {e}") from None
    for col in PRICE_COLUMNS:
        if col not in df.columns:
            raise ValueError(
                f"{path}: line {n_comment + 1} (header): missing column {col!r}; required {list(PRICE_COLUMNS)}"
            )
    line = n_comment + 2 + np.arange(len(df))
    blank = (df.apply(lambda c: c.str.strip()) == "").all(axis=1).to_numpy()
    df, line = df[~blank].reset_index(drop=True), line[~blank]
    out = pd.DataFrame(
        {
            "timestamp_utc": pd.to_datetime(df["timestamp_utc"], utc=True, errors="coerce"),
            "symbol": df["symbol"].str.strip(),
            "venue": df["venue"].str.strip(),
        }
    )
    numeric = [c for c in ("open", "high", "low", "close", "volume_base") if c in df.columns]
    for c in numeric:
        out[c] = pd.to_numeric(df[c], errors="coerce")
    for col in (*PRICE_COLUMNS, *numeric):
        bad = (out[col] == "") if col in ("symbol", "venue") else out[col].isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            kind = "timestamp" if col == "timestamp_utc" else "number" if col in numeric else "name"
            raise ValueError(
                f"{path}: line {line[row]}, column {col!r}: value {df[col].iloc[row]!r} is missing "
                f"or not a valid {kind}"
            )
    for c in ("open", "high", "low", "close"):
        if c in numeric:
            bad = ~(np.isfinite(out[c].to_numpy()) & (out[c].to_numpy() > 0) & (out[c].to_numpy() <= MAX_USD))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{path}: line {line[row]}, column {c!r}: value {df[c].iloc[row]!r} is not a price; "
                    f"allowed finite numbers in ({0}, {MAX_USD:g}] USD"
                )
    dup = out.duplicated(["timestamp_utc", "symbol", "venue"], keep="first").to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = int(rows[0])
        raise ValueError(
            f"{path}: {rows.size} duplicated row(s) of the same timestamp, symbol and venue, first at line "
            f"{line[first]} ({out['timestamp_utc'].iloc[first]}, {out['symbol'].iloc[first]}, "
            f"{out['venue'].iloc[first]}); a price path has one row per time: remove the duplicates"
        )
    return out.sort_values(["symbol", "venue", "timestamp_utc"], kind="stable").reset_index(drop=True)


def price_series(prices: pd.DataFrame, symbol: str, venue: str | None = None, column: str = "close") -> pd.Series:
    """One symbol's price column indexed by timestamp; `venue` is required when the symbol has several venues."""
    sel = prices[prices["symbol"] == symbol]
    if sel.empty:
        raise ValueError(f"symbol={symbol!r}: allowed {sorted(prices['symbol'].unique())}")
    venues = sorted(sel["venue"].unique())
    if venue is None and len(venues) > 1:
        raise ValueError(f"venue: required for symbol {symbol!r}; allowed {venues}")
    if venue is not None:
        if venue not in venues:
            raise ValueError(f"venue={venue!r}: allowed {venues} for symbol {symbol!r}")
        sel = sel[sel["venue"] == venue]
    return pd.Series(sel[column].to_numpy(), index=pd.DatetimeIndex(sel["timestamp_utc"]), name=symbol)


def underlying_of(symbol: str) -> str:
    """'ETH-USDT' -> 'ETH'."""
    return symbol.split("-")[0].split("/")[0]
