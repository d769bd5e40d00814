"""Read real price and gas series in the formats of the historic data folder and step them per block.

Hourly (or 10-minute) candles are not split into invented intra-candle paths. With fill="hold" a block
takes the close of the last candle that has ended (the first candle's open before that), so prices move
in steps at candle boundaries; fill="linear" interpolates between consecutive closes, which is smoother
but invents the path between observations (and says so in the manifest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from defistress.protocols.bounds import MAX_USD


class DataFileError(ValueError):
    """A data file that cannot be used: names the file, the row or column, and what is wrong."""


def read_ohlc_long(path: Path) -> pd.DataFrame:
    """Candles in long format: timestamp_utc, symbol, open, high, low, close (comment lines start with #)."""
    df = _read_csv(path)
    need = ["timestamp_utc", "symbol", "open", "high", "low", "close"]
    _require_columns(df, need, path)
    df["timestamp_utc"] = pd.to_datetime(df["timestamp_utc"], utc=True)
    _require_finite(df, ["open", "high", "low", "close"], path)
    return df


def read_coinapi(path: Path, symbol: str) -> pd.DataFrame:
    """10-minute CoinAPI-style candles (price_open, price_close...) as the long format for one symbol."""
    df = _read_csv(path)
    _require_columns(df, ["timestamp_utc", "price_open", "price_high", "price_low", "price_close"], path)
    out = pd.DataFrame(
        {
            "timestamp_utc": pd.to_datetime(df["timestamp_utc"], utc=True),
            "symbol": symbol,
            "open": df["price_open"],
            "high": df["price_high"],
            "low": df["price_low"],
            "close": df["price_close"],
        }
    )
    _require_finite(out, ["open", "high", "low", "close"], path)
    return out


def read_gas(path: Path, column: str) -> pd.DataFrame:
    """Gas-price series: timestamp_utc and the chosen column (wei or gwei as stored)."""
    df = _read_csv(path)
    _require_columns(df, ["timestamp_utc", column], path)
    out = pd.DataFrame(
        {
            "timestamp_utc": pd.to_datetime(df["timestamp_utc"], utc=True),
            "value": pd.to_numeric(df[column], errors="coerce"),
        }
    )
    _require_finite(out, ["value"], path)
    return out


def step_series(
    times: pd.Series,
    opens: np.ndarray,
    closes: np.ndarray,
    candle_seconds: float,
    start: pd.Timestamp,
    n_blocks: int,
    block_seconds: float,
    fill: str,
) -> np.ndarray:
    """Price per block from candles. Candle i spans [t_i, t_i + candle_seconds); its close is observed
    at its end. Blocks past the last candle hold the last close."""
    t0 = (times - start).dt.total_seconds().to_numpy()
    obs_t = np.concatenate([[t0[0]], t0 + candle_seconds])
    obs_p = np.concatenate([[opens[0]], closes])
    block_t = np.arange(n_blocks) * block_seconds
    if fill == "linear":
        return np.interp(block_t, obs_t, obs_p)
    idx = np.searchsorted(obs_t, block_t, side="right") - 1
    return obs_p[np.clip(idx, 0, len(obs_p) - 1)]


def require_unique_times(df: pd.DataFrame, path: Path, key: str) -> None:
    """A series has one row per time: duplicated timestamps would give a zero candle length and double rows."""
    dup = df["timestamp_utc"].duplicated()
    if dup.any():
        first = df["timestamp_utc"][dup].iloc[0]
        raise DataFileError(
            f"{path}: {int(dup.sum())} duplicated timestamp(s) in the series of {key}, first {first}; "
            "a price series has one row per time: remove the duplicates"
        )


def candle_seconds_of(times: pd.Series, path: Path) -> float:
    diffs = times.sort_values().diff().dropna().dt.total_seconds()
    if diffs.empty:
        raise DataFileError(f"{path}: needs at least two rows to know the candle length")
    return float(diffs.min())


def _read_csv(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise DataFileError(f"data file not found: {path}")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the data file: {exc.strerror or exc}") from None
    try:
        data.decode("utf-8")  # comment lines too: pandas would skip undecodable bytes there
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); data files are UTF-8 CSV"
        ) from None
    try:
        return pd.read_csv(path, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFileError(f"{path}: cannot parse as CSV: {exc}") from None


def _require_columns(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")


def _require_finite(df: pd.DataFrame, cols: list[str], path: Path) -> None:
    """Values are finite, > 0 and at most MAX_USD (1e15: the price ceiling of protocols/bounds.py; for a gas
    column in wei, 1e15 wei is the 1e6 gwei ceiling; gas in gwei is bounded again after conversion)."""
    for c in cols:
        vals = pd.to_numeric(df[c], errors="coerce")
        x = vals.to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(x) | (x <= 0) | (x > MAX_USD))
        if bad.size:
            row = int(bad[0])
            raise DataFileError(
                f"{path}: column {c!r} has a missing, non-numeric, non-positive or absurd (> {MAX_USD:g}) value "
                f"at data row {row + 1} (timestamp {df['timestamp_utc'].iloc[row]}); {bad.size} bad row(s) in all"
            )
        df[c] = vals.astype(float)
