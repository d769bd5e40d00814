"""Scenario tables of replayed data: price series (one per asset, each from its own file), named feeds that
oracles read (a venue's series, Chainlink rounds), the gas-price series, and the rules a replay follows.

Every file is read with a declared time zone (timestamps written without an offset are read in it) and a
declared interval (the candle length, or the longest allowed spacing of observations such as a feed's
heartbeat). A gap larger than the interval, a window outside the file, a missing column or a bad value is an
error naming the key, the file and the timestamp (sim/engine/replay.py); nothing is filled silently. A run that
outlasts its data is refused unless `after_end = "hold"` is declared, which the manifest records.

How blocks inside a candle are priced (`fill`): "hold" keeps the close of the last finished candle (the
open before it), "linear" interpolates closes, and "bridge" draws a seeded path inside each candle that
starts at the open, visits the low and the high and ends at the close (sim/engine/bridge.py), so that an
oracle can see the candle's low. The manifest records the method.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from defistress.scenarios.schema_base import Strict
from defistress.scenarios.units import Float, Seconds

#: data formats a series may be read from (columns in sim/engine/replay.py FORMAT_COLUMNS)
SeriesFormat = Literal["ohlc_long", "coinapi_10min", "close", "chainlink_rounds"]
#: how blocks inside a candle (or between observations) are priced
Fill = Literal["hold", "linear", "bridge"]

FORMAT_HELP = (
    "ohlc_long: timestamp_utc,symbol,open,high,low,close (the historic folder's hourly files); "
    "coinapi_10min: timestamp_utc,price_open,price_high,price_low,price_close; "
    "close: timestamp_utc and the value column named by `column`; "
    "chainlink_rounds: updated_at_utc,round_id,answer_raw,decimals (bundled round files and `defistress import "
    "chainlink`), one observation per published round"
)


def check_timezone(value: str) -> str:
    """An IANA time-zone name (e.g. 'UTC', 'America/New_York'); a ValueError names the allowed form."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; give an IANA name such as 'UTC' or 'Europe/London'") from None
    return value


def check_iso_time(value: str | None) -> str | None:
    """An ISO-8601 time such as '2020-03-12T00:00:00Z' (or without offset, read in the table's time zone)."""
    if value is None:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 time; write e.g. '2020-03-12T00:00:00Z'") from None
    return value


class _DataFile(Strict):
    """Where a series comes from and how its clock reads."""

    file: str = Field(
        min_length=1,
        description="CSV (or Parquet: a .parquet suffix) path relative to the scenario file or to "
        "scenarios/historic/data",
    )
    format: SeriesFormat = Field("ohlc_long", description="columns of the file: " + FORMAT_HELP)
    symbol: str | None = Field(
        None,
        min_length=1,
        description="rows to keep: the `symbol` column of an ohlc_long file (e.g. 'ETH-USDT') or the `feed` column "
        "of a rounds file (e.g. 'stETH/ETH'); required for ohlc_long",
    )
    column: str | None = Field(
        None, min_length=1, description="value column of a 'close' file (e.g. 'price_close'); only for format close"
    )
    timezone: str | None = Field(
        None,
        description="IANA time zone of timestamps written without an offset (default: market.replay.timezone, "
        "else UTC); timestamps with an offset are read as written",
    )
    interval: Seconds | None = Field(
        None,
        gt=0,
        le=90 * 86400.0,
        description="declared candle length or longest spacing of observations, seconds or e.g. '1h', '10m', "
        "'25h' (a Chainlink feed's heartbeat plus slack); a larger gap is an error. Default: the smallest spacing "
        "in the file (recorded as inferred); required for chainlink_rounds",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else check_timezone(v)

    @model_validator(mode="after")
    def _format_fields(self):
        if self.format == "ohlc_long" and self.symbol is None:
            raise ValueError("symbol: an ohlc_long file holds several symbols; name the one to read (e.g. 'ETH-USDT')")
        if self.format == "close" and self.column is None:
            raise ValueError("column: a 'close' file needs the name of its value column")
        if self.format != "close" and self.column is not None:
            raise ValueError(f"column: only a 'close' file takes a value column (format is {self.format!r})")
        if self.format == "chainlink_rounds" and self.interval is None:
            raise ValueError(
                "interval: rounds come at irregular times; declare the longest allowed spacing, e.g. the feed's "
                "heartbeat plus slack ('25h' for a 24-hour heartbeat)"
            )
        return self


class SeriesSpec(_DataFile):
    """The reference price of one market asset, from its own file."""

    asset: str = Field(min_length=1, description="the market asset this series prices (market.assets symbol)")
    quote: str | None = Field(
        None,
        min_length=1,
        description="the series is priced in this market asset (e.g. 'ETH' for a stETH/ETH series): the USD price "
        "is the series' value x that asset's USD price; default USD",
    )
    fill: Fill | None = Field(None, description="overrides market.replay.fill for this series")


class FeedSpec(_DataFile):
    """A named data series that oracles read with `source = "feed:ID"` (a venue's prices, Chainlink rounds):
    it moves no reference price."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", description="feed id, named by oracles as 'feed:ID'")
    quote: str | None = Field(
        None,
        min_length=1,
        description="the feed's values are in this unit (e.g. 'ETH' for stETH/ETH rounds); default USD",
    )


class ReplaySpec(Strict):
    """Replay of real prices: one series per asset (`series`), or the one-file form (`file` + `symbols`), and
    named feeds for oracles; the run starts at `start` and each block is priced by `fill`."""

    series: list[SeriesSpec] = Field(
        default_factory=list, description="one table per replayed asset, each its own file"
    )
    feeds: list[FeedSpec] = Field(default_factory=list, description="named series that oracles read as 'feed:ID'")
    file: str | None = Field(
        None, min_length=1, description="one-file form: a CSV holding every replayed asset (see `symbols`)"
    )
    format: SeriesFormat = Field("ohlc_long", description="one-file form: columns of `file`: " + FORMAT_HELP)
    symbols: dict[str, str] = Field(
        default_factory=dict, description="one-file form: scenario asset -> series symbol, e.g. {ETH = 'ETH-USDT'}"
    )
    interval: Seconds | None = Field(
        None,
        gt=0,
        le=90 * 86400.0,
        description="one-file form: the declared candle length, seconds or e.g. '1h' (default: inferred, recorded)",
    )
    start: str | None = Field(
        None,
        description="the run's start (ISO time, e.g. '2020-03-12T00:00:00Z'; without offset: in `timezone`); default "
        "the latest first row of the series, so every series covers it",
    )
    timezone: str = Field("UTC", description="IANA time zone of `start` and of files without an offset")
    fill: Fill = Field(
        "hold",
        description="blocks inside a candle: hold (close of the last finished candle), linear (interpolated closes, "
        "an invented path) or bridge (seeded path through open, low, high and close; see market.replay.bridge_order)",
    )
    bridge_order: Literal["direction", "random"] = Field(
        "direction",
        description="bridge: order of the extremes inside a candle: direction (a rising candle dips to its low "
        "first, a falling one peaks first) or random (drawn 50/50 from the run's seed)",
    )
    after_end: Literal["refuse", "hold"] = Field(
        "refuse",
        description="when the data end before the run does: refuse (an error naming both ends), or hold the "
        "last close flat to the end of the run (recorded in the manifest)",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("start")
    @classmethod
    def _start(cls, v: str | None) -> str | None:
        return check_iso_time(v)

    @model_validator(mode="after")
    def _forms(self):
        if self.file is not None and self.series:
            raise ValueError(
                "market.replay: give `file` + `symbols` (one file) or `series` (one file per asset), not both"
            )
        if self.file is not None and not self.symbols:
            raise ValueError("market.replay.symbols: the one-file form needs asset -> symbol, e.g. {ETH = 'ETH-USDT'}")
        if self.file is None and self.symbols:
            raise ValueError("market.replay.symbols: only with `file` (the one-file form); use `series` otherwise")
        if self.file is None and not self.series and not self.feeds:
            raise ValueError("market.replay: give `series` (one per asset), `file` + `symbols`, or `feeds`")
        if not self.series and self.file is None and self.start is None:
            raise ValueError("market.replay.start: a replay of feeds only needs the run's start time")
        assets = [a for a, _ in self.asset_series()]
        dup = sorted({a for a in assets if assets.count(a) > 1})
        if dup:
            raise ValueError(f"market.replay.series: one series per asset; several for {dup}")
        ids = [f.id for f in self.feeds]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"market.replay.feeds: duplicate ids {dup}")
        for key, s in self.asset_series():
            if s.format == "chainlink_rounds" and (s.fill or self.fill) != "hold":
                raise ValueError(f"{key}.fill: rounds are replayed as published; only 'hold' applies")
        return self

    def asset_series(self) -> list[tuple[str, SeriesSpec]]:
        """(key path, series) of every replayed asset, the one-file form expanded to one series per asset."""
        if self.file is not None:
            return [
                (
                    f"market.replay.symbols.{asset}",
                    SeriesSpec(asset=asset, file=self.file, format=self.format, symbol=sym, interval=self.interval),
                )
                for asset, sym in self.symbols.items()
            ]
        return [(f"market.replay.series.{i}", s) for i, s in enumerate(self.series)]

    def data_files(self) -> list[tuple[str, str]]:
        """(key of the file, file) of every file the replay reads."""
        if self.file is not None:
            out = [("market.replay.file", self.file)]
        else:
            out = [(f"market.replay.series.{i}.file", s.file) for i, s in enumerate(self.series)]
        return out + [(f"market.replay.feeds.{i}.file", f.file) for i, f in enumerate(self.feeds)]

    def replayed_assets(self) -> list[str]:
        return [s.asset for _, s in self.asset_series()]


class GasReplaySpec(Strict):
    """Replay of a real gas-price series: each block's base fee is the value of the bucket it falls in."""

    file: str = Field(min_length=1, description="path relative to the scenario file or to scenarios/historic/data")
    column: str = Field("avgGasDay", min_length=1, description="column of the gas price in the file")
    unit: Literal["wei", "gwei"] = Field("wei", description="unit of the column's values")
    start: str | None = Field(
        None,
        description="first row (ISO time) to replay; default the run's start (market.replay.start) or else the "
        "file's first row",
    )
    timezone: str = Field("UTC", description="IANA time zone of timestamps written without an offset")
    interval: Seconds | None = Field(
        None,
        gt=0,
        le=90 * 86400.0,
        description="declared bucket length, seconds or e.g. '10m'; a larger gap is an error (default: inferred)",
    )
    after_end: Literal["refuse", "hold"] = Field(
        "refuse", description="when the series ends before the run: refuse, or hold the last value (recorded)"
    )
    scale: Float = Field(
        1.0, gt=0, le=1000, description="multiplies the replayed gas price (0.1 = ten times cheaper; unitless)"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("start")
    @classmethod
    def _start(cls, v: str | None) -> str | None:
        return check_iso_time(v)


def check_replay_links(scenario) -> None:
    """Cross-table checks: series and quotes name market assets, a quote is not itself quoted, feeds exist."""
    r = scenario.market.replay
    assets = [a.symbol for a in scenario.market.assets]
    if r is None:
        return
    quoted = {}
    for key, s in r.asset_series():
        if s.asset not in assets:
            raise ValueError(f"{key}.asset: unknown asset {s.asset!r}; allowed: {assets}")
        if s.quote is not None:
            if s.quote not in assets or s.quote == s.asset:
                raise ValueError(f"{key}.quote: {s.quote!r} must be another market asset; allowed: {assets}")
            quoted[s.asset] = (key, s.quote)
    for key, quote in quoted.values():
        if quote in quoted:
            raise ValueError(f"{key}.quote: {quote!r} is itself quoted in {quoted[quote][1]!r}; quote a USD series")
