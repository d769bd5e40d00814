"""Compare margin models side by side on the same books, read portfolio files and historic price paths, plot.

Portfolio files (TOML or JSON) hold a [market] table and [[accounts]] in the record form of Portfolio.from_records
(format and errors: portfolio_file.py; forward curves, collateral, coin-margined accounts, published SPAN arrays).
Historic price files follow scenarios/historic/data: '#' comment lines, then a long-format CSV with
timestamp_utc,symbol,venue,open,high,low,close,... . Plotting is matplotlib object-oriented (imported lazily;
never plt.show()), with the Okabe-Ito colour-blind-safe palette.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.protocols.margin.catalog import get_model, list_models
from defistress.protocols.margin.portfolio import MarketState, Portfolio, UnsupportedBook
from defistress.protocols.margin.portfolio_file import MAX_USD, read_text_file
from defistress.protocols.margin.portfolio_file import PortfolioFile as PortfolioFile  # the file format lives there
from defistress.protocols.margin.portfolio_file import load_portfolio as load_portfolio
from defistress.protocols.margin.portfolio_file import load_portfolio_file as load_portfolio_file
from defistress.protocols.margin.portfolio_file import parse_portfolio as parse_portfolio
from defistress.protocols.margin.portfolio_file import read_portfolio as read_portfolio

PRICE_COLUMNS = ("timestamp_utc", "symbol", "venue", "open", "high", "low", "close")


# ---------------------------------------------------------------------------------------------- compare
def build_model(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
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
    `overrides` go to every model whose params accept them (see build_model). An account a model cannot value
    (kinds it does not know, a coin margin currency) gets NaN figures and main_driver 'unsupported'."""
    allowed = list_models()
    unknown = [m for m in models if m not in allowed]
    if unknown:
        raise ValueError(f"models={unknown}: unknown; allowed {allowed}")
    labels = list(pf.labels) if pf.labels else [f"account-{i}" for i in range(pf.n_accounts)]
    frames = []
    n = pf.n_accounts
    for name in models:
        model = build_model(name, overrides)
        im, mm, eq = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
        driver = ["unsupported"] * n
        try:
            res = model.requirements(pf, mkt)
            im, mm, eq, driver = res.im, res.mm, res.equity, main_driver(res.drivers, n)
        except UnsupportedBook:  # value the accounts the model can, one by one
            for i in range(n):
                try:
                    one = model.requirements(pf.subset([i]), mkt)
                except UnsupportedBook:
                    continue
                im[i], mm[i], eq[i], driver[i] = one.im[0], one.mm[0], one.equity[0], main_driver(one.drivers, 1)[0]
        frames.append(
            pd.DataFrame(
                {
                    "account": labels,
                    "model": name,
                    "im_usd": im,
                    "mm_usd": mm,
                    "equity_usd": eq,
                    "excess_mm_usd": eq - mm,
                    "main_driver": driver,
                }
            )
        )
    cols = ["account", "model", "im_usd", "mm_usd", "equity_usd", "excess_mm_usd", "main_driver"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


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
    idx = pd.DatetimeIndex(frame.index)
    step_days = float(np.median((idx[1:] - idx[:-1]).total_seconds())) / 86_400.0
    logs = pd.DataFrame(np.log(frame.to_numpy(dtype=np.float64)), index=frame.index, columns=frame.columns)
    rets = logs.diff().iloc[1:]
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
            x = out[c].to_numpy()
            bad = ~(np.isfinite(x) & (x > 0) & (x <= MAX_USD))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{path}: line {line[row]}, column {c!r}: value {df[c].iloc[row]!r} is not a price; "
                    f"allowed finite numbers in (0, {MAX_USD:g}] USD"
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
