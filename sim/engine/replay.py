"""Read the replayed data of a scenario (price series, feeds, the gas series), check it, and step it per block.

Every file is read with its declared time zone and interval (scenarios/schema_replay.py). Nothing is filled
silently: a missing column, an unparseable timestamp, a duplicate row, a missing or non-positive value, an
OHLC row whose low or high does not bound its open and close, a gap larger than the interval inside the run's
window, a run that starts before a series' first row, or a run that ends after the data (unless
`after_end = "hold"` is declared) is a `DataFileError` naming the scenario key, the file and the timestamp.
`ReplayData` reads and checks everything before a block is simulated, so a malformed input never leaves a
partial run folder; `defistress validate` runs the same checks.

Times: a row's timestamp is a candle's OPEN time (it covers [t, t + interval)); an observation (a 'close'
row, a Chainlink round) holds from its time until the next. Run time 0 is `market.replay.start` (default:
the latest first row of the asset series, so every series covers it); `epoch` is that instant in unix
seconds, which oracles (the OSM's hour boundaries, round times) and governance times use.

Stepping (`fill`): hold = the close of the last finished candle, the open before it (observations: the last
one); linear = closes interpolated between candle ends (an invented path, marked in the manifest); bridge = a
seeded path inside each candle through its open, low, high and close (sim/engine/bridge.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from defistress.protocols.bounds import MAX_GWEI, MAX_USD
from defistress.sim.engine import bridge

#: the columns each format needs: (time column, {role: column}) where roles are open/high/low/close or value
FORMAT_COLUMNS: dict[str, tuple[str, dict[str, str]]] = {
    "ohlc_long": ("timestamp_utc", {"open": "open", "high": "high", "low": "low", "close": "close"}),
    "coinapi_10min": (
        "timestamp_utc",
        {"open": "price_open", "high": "price_high", "low": "price_low", "close": "price_close"},
    ),
    "close": ("timestamp_utc", {}),
    "chainlink_rounds": ("updated_at_utc", {}),
}
#: columns of a Chainlink rounds file (the bundled 05c/09c files and `defistress import chainlink`)
ROUND_COLUMNS = ("updated_at_utc", "round_id", "answer_raw", "decimals")
#: relative slack on the interval when checking gaps (float seconds)
_GAP_RTOL = 1e-9


class DataFileError(ValueError):
    """A data file that cannot be used: names the scenario key, the file, the timestamp and what is wrong."""

    def __init__(self, message: str, *, key: str | None = None, file: str | Path | None = None, timestamp=None):
        self.key = key
        self.file = None if file is None else str(file)
        self.timestamp = None if timestamp is None else _iso(timestamp)
        parts = [p for p in (key, self.file) if p]
        super().__init__(": ".join([*parts, message]))


def _iso(t) -> str:
    """A timestamp (pandas, or unix seconds) as ISO-8601 UTC text."""
    if isinstance(t, (int, float, np.integer, np.floating)):
        t = pd.Timestamp(float(t), unit="s", tz="UTC")
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Series:
    """One series as read: unix times (UTC seconds, increasing) and values; candles carry open/high/low/close."""

    key: str
    file: Path
    format: str
    symbol: str | None
    timezone: str
    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    interval: float
    interval_declared: bool
    round_id: list[str] | None = None

    @property
    def is_candles(self) -> bool:
        """Candles cover [t, t + interval) with an open and a close; other rows are observations at t."""
        return self.format in ("ohlc_long", "coinapi_10min")

    @property
    def coverage_end(self) -> float:
        """Unix time after which the file says nothing: the last candle's end, or the last observation plus
        the interval (the next one was due by then)."""
        return float(self.times[-1] + self.interval)

    def check_window(self, start: float, last_block: float, after_end: str) -> float | None:
        """The run [start, last_block] must lie inside the file; returns the time from which the last value is
        held (after_end = "hold"), else None. Checks gaps inside the window."""
        if start < self.times[0]:
            raise DataFileError(
                f"the run starts at {_iso(start)} but the file's first row is {_iso(self.times[0])} (window outside "
                "the file; start the run later or use a file that covers it)",
                key=self.key,
                file=self.file,
                timestamp=start,
            )
        held = None
        if last_block >= self.coverage_end:
            if after_end != "hold":
                raise DataFileError(
                    f"the run's last block is at {_iso(last_block)} but the data end at {_iso(self.coverage_end)} "
                    f"(last row {_iso(self.times[-1])} + interval {self.interval:g} s); shorten run.duration or "
                    "declare after_end = 'hold' to hold the last value",
                    key=self.key,
                    file=self.file,
                    timestamp=self.coverage_end,
                )
            held = self.coverage_end
        # rows that matter: from the one in force at `start` to the first after the last block
        lo = max(int(np.searchsorted(self.times, start, side="right")) - 1, 0)
        hi = min(int(np.searchsorted(self.times, last_block, side="right")) + 1, len(self.times))
        gaps = np.diff(self.times[lo:hi])
        bad = np.flatnonzero(gaps > self.interval * (1 + _GAP_RTOL))
        if bad.size:
            i = lo + int(bad[0])
            raise DataFileError(
                f"gap of {gaps[bad[0]]:g} s after the row at {_iso(self.times[i])} "
                f"(next row {_iso(self.times[i + 1])}) is larger than the interval {self.interval:g} s"
                + ("" if self.interval_declared else " inferred from the file (declare `interval` if this is expected)")
                + "; nothing is filled: declare a longer interval or use a file without the gap",
                key=self.key,
                file=self.file,
                timestamp=self.times[i],
            )
        return held

    def manifest(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "file": str(self.file.name),
            "format": self.format,
            "symbol": self.symbol,
            "timezone": self.timezone,
            "interval_s": self.interval,
            "interval_declared": self.interval_declared,
            "first_row": _iso(self.times[0]),
            "last_row": _iso(self.times[-1]),
        }


# --- reading --------------------------------------------------------------------------------------------
def read_series(
    path: Path,
    key: str,
    fmt: str,
    *,
    symbol: str | None = None,
    column: str | None = None,
    timezone: str = "UTC",
    interval: float | None = None,
) -> Series:
    """Read one series from `path` in format `fmt` and check its rows (see the module docstring)."""
    df = _read_csv(path, key)
    time_col, roles = FORMAT_COLUMNS[fmt]
    need = [time_col, *roles.values()]
    if fmt == "ohlc_long":
        need.append("symbol")
    if fmt == "close":
        need.append(str(column))
    if fmt == "chainlink_rounds":
        need = list(ROUND_COLUMNS) + (["feed"] if symbol is not None else [])
    _require_columns(df, need, path, key)
    if symbol is not None and fmt in ("ohlc_long", "chainlink_rounds"):
        col = "symbol" if fmt == "ohlc_long" else "feed"
        have = sorted(df[col].dropna().astype(str).unique())
        df = df[df[col].astype(str) == symbol].reset_index(drop=True)
        if df.empty:
            raise DataFileError(f"no rows with {col} = {symbol!r}; the file has {have}", key=key, file=path)
    times = _parse_times(df[time_col], timezone, path, key)
    if fmt == "chainlink_rounds":
        value = _round_answers(df, times, path, key)
        o = h = lo = c = value
    elif fmt == "close":
        assert column is not None  # schema_replay: a 'close' file names its value column
        o = h = lo = c = _positive(df[column], column, times, path, key)
    else:
        o, h, lo, c = (_positive(df[roles[r]], roles[r], times, path, key) for r in ("open", "high", "low", "close"))
        bad = np.flatnonzero((lo > np.minimum(o, c) * (1 + 1e-12)) | (h < np.maximum(o, c) * (1 - 1e-12)))
        if bad.size:
            i = int(bad[0])
            raise DataFileError(
                f"candle at {_iso(times[i])}: low {lo[i]:g} and high {h[i]:g} must bound open {o[i]:g} and close "
                f"{c[i]:g}",
                key=key,
                file=path,
                timestamp=times[i],
            )
    order = np.argsort(times, kind="stable")
    times = times[order]
    o, h, lo, c = (np.asarray(x, dtype=float)[order] for x in (o, h, lo, c))
    dup = np.flatnonzero(np.diff(times) == 0)
    if dup.size:
        raise DataFileError(
            f"two rows share the timestamp {_iso(times[dup[0]])}", key=key, file=path, timestamp=times[dup[0]]
        )
    rounds = None
    if fmt == "chainlink_rounds":
        rounds = [str(x) for x in df["round_id"].to_numpy()[order]]
    if interval is None:
        steps = np.diff(times)
        if steps.size == 0:
            raise DataFileError(
                "needs at least two rows to infer the interval (or declare `interval`)", key=key, file=path
            )
        interval_s, declared = float(steps.min()), False
    else:
        interval_s, declared = float(interval), True
    return Series(key, Path(path), fmt, symbol, timezone, times, o, h, lo, c, interval_s, declared, rounds)


def _read_csv(path: Path, key: str) -> pd.DataFrame:
    """A data file as a table: UTF-8 CSV with '#' comment lines, or Parquet (a `.parquet` suffix, as
    `defistress import chainlink --out rounds.parquet` writes) with the same columns."""
    if not Path(path).is_file():
        raise DataFileError(f"data file not found: {path}", key=key)
    if Path(path).suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types (ArrowInvalid, OSError) for a bad file
            raise DataFileError(f"cannot read as Parquet: {exc}", key=key, file=path) from None
        for col in ("round_id", "answer_raw"):  # exact integers, as the CSV reader keeps them
            if col in df.columns:
                df[col] = df[col].astype(str)
        return df
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFileError(f"cannot read the data file: {exc.strerror or exc}", key=key, file=path) from None
    try:
        data.decode("utf-8")  # comment lines too: pandas would skip undecodable bytes there
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); data files are UTF-8 CSV",
            key=key,
            file=path,
        ) from None
    try:
        return pd.read_csv(path, comment="#", dtype={"round_id": str, "answer_raw": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFileError(f"cannot parse as CSV: {exc}", key=key, file=path) from None


def _require_columns(df: pd.DataFrame, cols: list[str], path: Path, key: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataFileError(f"missing column(s) {missing}; found {list(df.columns)}", key=key, file=path)


def _parse_times(col: pd.Series, timezone: str, path: Path, key: str) -> np.ndarray:
    """Unix seconds (UTC) of a timestamp column: written offsets are kept, naive times are read in `timezone`."""
    text = col.astype(str).str.strip()
    has_offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    out = np.empty(len(text))
    for mask, aware in ((has_offset, True), (~has_offset, False)):
        if not mask.any():
            continue
        part = text[mask]
        try:
            ts = pd.to_datetime(part, utc=aware, format="ISO8601")
            if not aware:
                ts = ts.dt.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except (ValueError, TypeError) as exc:
            bad = _first_unparseable(part, aware, timezone)
            raise DataFileError(
                f"timestamp {bad!r} cannot be read as an ISO time in {timezone} ({exc})", key=key, file=path
            ) from None
        out[mask.to_numpy()] = ts.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy() / 1e9
    return out


def _first_unparseable(part: pd.Series, aware: bool, timezone: str) -> str:
    for value in part:
        try:
            t = pd.Timestamp(value)
            if not aware:
                pd.Series([t]).dt.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except (ValueError, TypeError):
            return str(value)
    return str(part.iloc[0])


def _positive(col: pd.Series, name: str, times: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Values are finite, > 0 and at most MAX_USD (1e15, the price ceiling of protocols/bounds.py; for a gas column
    in wei, 1e15 wei is the 1e6 gwei ceiling; gas in gwei is bounded again after conversion)."""
    vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(vals) | (vals <= 0) | (vals > MAX_USD))
    if bad.size:
        i = int(bad[0])
        raise DataFileError(
            f"column {name!r} has a missing, non-numeric, non-positive or absurd (> {MAX_USD:g}) value at data row "
            f"{i + 1} (timestamp {_iso(times[i])}); {bad.size} bad row(s) in all",
            key=key,
            file=path,
            timestamp=times[i],
        )
    return vals


def _round_answers(df: pd.DataFrame, times: np.ndarray, path: Path, key: str) -> np.ndarray:
    """answer_raw / 10**decimals of each round, exactly as published (integers read as integers)."""
    out = np.empty(len(df))
    for i, (raw, dec) in enumerate(zip(df["answer_raw"], df["decimals"])):
        try:
            answer, decimals = int(str(raw).strip()), int(str(dec).strip())
        except ValueError:
            answer, decimals = 0, 0
        if answer <= 0 or not 0 <= decimals <= 36:
            raise DataFileError(
                f"round at {_iso(times[i])}: answer_raw {raw!r} / decimals {dec!r} is not a positive answer (Chainlink "
                "answers are positive integers scaled by 10**decimals)",
                key=key,
                file=path,
                timestamp=times[i],
            )
        out[i] = answer / 10**decimals
    return out


# --- stepping ---------------------------------------------------------------------------------------------
def step_hold(s: Series, block_t: np.ndarray) -> np.ndarray:
    """Value per block at unix times `block_t`: candles hold the last finished close (the open before it),
    observations hold the last observation."""
    if s.is_candles:
        obs_t = np.concatenate([[s.times[0]], s.times + s.interval])
        obs_p = np.concatenate([[s.open[0]], s.close])
    else:
        obs_t, obs_p = s.times, s.close
    idx = np.searchsorted(obs_t, block_t, side="right") - 1
    return obs_p[np.clip(idx, 0, len(obs_p) - 1)]


def step_linear(s: Series, block_t: np.ndarray) -> np.ndarray:
    """Closes (observations) interpolated linearly in time; held after the last one."""
    if s.is_candles:
        obs_t = np.concatenate([[s.times[0]], s.times + s.interval])
        obs_p = np.concatenate([[s.open[0]], s.close])
    else:
        obs_t, obs_p = s.times, s.close
    return np.interp(block_t, obs_t, obs_p)


# --- the scenario's data ---------------------------------------------------------------------------------
@dataclass
class GasPath:
    """The base fee per block from a replayed gas series (gwei), and what it was read from."""

    gwei: np.ndarray
    info: dict[str, Any]


@dataclass
class ReplayData:
    """Every replayed series of a scenario, read and checked; `epoch` is the run's start in unix seconds."""

    epoch: float
    n_blocks: int
    block_seconds: float
    series: dict[str, Series] = field(default_factory=dict)  # asset -> series
    quotes: dict[str, str] = field(default_factory=dict)  # asset -> quote asset
    fills: dict[str, str] = field(default_factory=dict)  # asset -> fill
    feeds: dict[str, Series] = field(default_factory=dict)  # feed id -> series
    feed_quotes: dict[str, str] = field(default_factory=dict)
    held_from: dict[str, float] = field(default_factory=dict)  # key -> unix time the last value is held from
    files: dict[str, Path] = field(default_factory=dict)  # file as named in the scenario -> resolved path
    gas: GasPath | None = None
    after_end: str = "refuse"
    bridge_order: str = "direction"
    start_declared: bool = False

    @property
    def block_times(self) -> np.ndarray:
        """Unix time of every block."""
        return self.epoch + np.arange(self.n_blocks) * self.block_seconds

    def asset_path(self, asset: str, rng: np.random.Generator | None = None) -> np.ndarray:
        """The replayed price per block of `asset` in the series' own unit (before any quote)."""
        s, fill = self.series[asset], self.fills[asset]
        t = self.block_times
        if fill == "bridge":
            if rng is None:
                raise ValueError("the bridge needs the run's random stream")
            return bridge.intrabar_path(s, t, self.block_seconds, self.bridge_order, rng, key=s.key)
        return step_linear(s, t) if fill == "linear" else step_hold(s, t)

    def feed_values(self, feed: str) -> tuple[np.ndarray, np.ndarray]:
        """(run seconds, value) of a feed's observations (candles: their closes at candle end)."""
        s = self.feeds[feed]
        if s.is_candles:
            return s.times + s.interval - self.epoch, s.close
        return s.times - self.epoch, s.close

    def feed_path(self, feed: str) -> np.ndarray:
        """A feed's value at every block: the last observation (a candle's close once it ends)."""
        return step_hold(self.feeds[feed], self.block_times)

    def data_sha256(self) -> dict[str, str]:
        return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in sorted(self.files.items())}

    def manifest(self) -> dict[str, Any] | None:
        """What the replay read and how blocks were priced (None without replayed prices or feeds)."""
        if not self.series and not self.feeds:
            return None
        fills = sorted(set(self.fills.values()))
        ends = [x.coverage_end for x in (*self.series.values(), *self.feeds.values())]
        last_block = self.epoch + (self.n_blocks - 1) * self.block_seconds
        return {
            "start": _iso(self.epoch),
            "start_declared": self.start_declared,
            "end": _iso(self.epoch + self.n_blocks * self.block_seconds),
            "fill": fills[0] if len(fills) == 1 else "mixed",
            "after_end": self.after_end,
            "held_from": {k: _iso(v) for k, v in self.held_from.items()},
            "data_end": _iso(min(ends)),
            "held_flat_seconds": max(last_block - min(ends), 0.0) if self.held_from else 0.0,
            "series": [
                {
                    **s.manifest(),
                    "asset": a,
                    "quote": self.quotes.get(a, "USD"),
                    "fill": self.fills[a],
                    **({"bridge": bridge.describe(self.bridge_order)} if self.fills[a] == "bridge" else {}),
                    **({"invented_path": True} if self.fills[a] == "linear" else {}),
                }
                for a, s in self.series.items()
            ],
            "feeds": [
                {**s.manifest(), "id": fid, "quote": self.feed_quotes.get(fid, "USD")} for fid, s in self.feeds.items()
            ],
        }


def load_replay(scenario, resolve_data) -> ReplayData:
    """Read and check every replayed input of a validated scenario (series, feeds, gas); raises DataFileError."""
    s = scenario
    r = s.market.replay
    n, bs = s.n_blocks, s.run.block_seconds
    data = ReplayData(epoch=0.0, n_blocks=n, block_seconds=bs)
    if r is not None:
        default_tz = r.timezone
        for key, spec in r.asset_series():
            path = _resolve(resolve_data, spec.file, key + ".file" if "series" in key else "market.replay.file")
            data.files[spec.file] = path
            data.series[spec.asset] = read_series(
                path,
                key,
                spec.format,
                symbol=spec.symbol,
                column=spec.column,
                timezone=spec.timezone or default_tz,
                interval=spec.interval,
            )
            data.fills[spec.asset] = spec.fill or r.fill
            if spec.quote is not None:
                data.quotes[spec.asset] = spec.quote
        for i, spec in enumerate(r.feeds):
            key = f"market.replay.feeds.{i}"
            path = _resolve(resolve_data, spec.file, key + ".file")
            data.files[spec.file] = path
            data.feeds[spec.id] = read_series(
                path,
                key,
                spec.format,
                symbol=spec.symbol,
                column=spec.column,
                timezone=spec.timezone or default_tz,
                interval=spec.interval,
            )
            if spec.quote is not None:
                data.feed_quotes[spec.id] = spec.quote
        data.after_end, data.bridge_order = r.after_end, r.bridge_order
        if r.start is not None:
            data.epoch, data.start_declared = _start_time(r.start, r.timezone, "market.replay.start"), True
        elif data.series:
            data.epoch = max(float(x.times[0]) for x in data.series.values())
        last = data.epoch + (n - 1) * bs
        for x in (*data.series.values(), *data.feeds.values()):
            held = x.check_window(data.epoch, last, r.after_end)
            if held is not None:
                data.held_from[x.key] = held
        for asset, fill in data.fills.items():
            why = bridge.not_applicable(data.series[asset], bs) if fill == "bridge" else None
            if why is not None:
                x = data.series[asset]
                raise DataFileError(
                    why, key=x.key + ".fill" if "series" in x.key else "market.replay.fill", file=x.file
                )
    if s.gas.replay is not None:
        data.gas = _gas_path(s.gas.replay, data, r is not None, resolve_data)
    return data


def check_data(loaded) -> ReplayData:
    """Read and check a loaded scenario's replayed inputs as a run would; a DataFileError becomes a
    ScenarioError whose one line is the keyed message (for `defistress validate`)."""
    from defistress.scenarios.loader import ScenarioError

    try:
        return load_replay(loaded.scenario, loaded.resolve_data)
    except DataFileError as exc:
        raise ScenarioError(loaded.source, [str(exc)]) from None


def _resolve(resolve_data, file: str, key: str) -> Path:
    try:
        return Path(resolve_data(file))
    except ValueError as exc:  # ScenarioError from the loader: re-key it
        raise DataFileError(str(getattr(exc, "errors", [exc])[0]), key=key) from None


def _start_time(text: str, timezone: str, key: str) -> float:
    t = pd.Timestamp(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        try:
            t = t.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        except (ValueError, TypeError) as exc:
            raise DataFileError(f"{text!r} is not a valid time in {timezone}: {exc}", key=key) from None
    return float(t.tz_convert("UTC").value / 1e9)


def _gas_path(spec, data: ReplayData, aligned: bool, resolve_data) -> GasPath:
    """Base fee per block (gwei): each bucket's value holds over its bucket."""
    key = "gas.replay"
    path = _resolve(resolve_data, spec.file, key + ".file")
    data.files[spec.file] = path
    s = read_series(path, key, "close", column=spec.column, timezone=spec.timezone, interval=spec.interval)
    if spec.start is not None:
        start, why = _start_time(spec.start, spec.timezone, key + ".start"), "gas.replay.start"
    elif aligned:
        start, why = data.epoch, "market.replay.start"
    else:
        start, why = float(s.times[0]), "the file's first row"
    s.format = "buckets"  # each row holds over [t, t + interval)
    held = s.check_window(start, start + (data.n_blocks - 1) * data.block_seconds, spec.after_end)
    if held is not None:
        data.held_from[key] = held
    t = start + np.arange(data.n_blocks) * data.block_seconds
    idx = np.clip(np.searchsorted(s.times, t, side="right") - 1, 0, len(s.times) - 1)
    gwei = s.close[idx] * (1e-9 if spec.unit == "wei" else 1.0) * spec.scale
    if (gwei > MAX_GWEI).any():
        raise DataFileError(
            f"gas prices up to {gwei.max():g} gwei after unit and scale; allowed <= {MAX_GWEI:g} gwei (check `unit` "
            "and `scale`)",
            key=key,
            file=path,
        )
    info = {
        "path": "replayed",
        **s.manifest(),
        "format": "buckets",
        "column": spec.column,
        "unit": spec.unit,
        "scale": spec.scale,
        "start": _iso(start),
        "start_from": why,
        "after_end": spec.after_end,
        **({"held_from": _iso(held)} if held is not None else {}),
    }
    return GasPath(gwei, info)
