"""Numbers as a reader wants them: money in $k / $M / $B with the exact figure on hover, shares in %, counts with
thousands separators, time in hours; labels from metric names ("first_liquidation_s" -> "First liquidation (s)").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

SECONDS_PER_HOUR = 3600.0


def format_usd(v: float, _pos: object = None) -> str:
    """Short USD label, three significant figures: $1.23B, $3.4M, $56k, $78, -$45k."""
    a = abs(v)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{'-' if v < 0 else ''}${a / div:.3g}{unit}"
    return f"{'-' if v < 0 else ''}${a:.3g}"


def format_usd_millions(v: float, _pos: object = None) -> str:
    """A money axis tick in $M: $0, $0.5M, $12M, $1,200M (one unit on the whole axis reads better than mixed)."""
    m = v / 1e6
    if m == 0:
        return "$0"
    return f"{'-' if m < 0 else ''}${abs(m):,.3g}M" if abs(m) < 1000 else f"{'-' if m < 0 else ''}${abs(m):,.0f}M"


#: format kind -> number to text
FORMATS: dict[str, Callable[[float], str]] = {
    "usd": format_usd,
    "usd_full": lambda v: f"{'-' if v < 0 else ''}${abs(v):,.0f}",
    "pct": lambda v: f"{v:.2f}%",  # the value is already in %
    "frac": lambda v: f"{100 * v:.2f}%",  # the value is a fraction
    "x": lambda v: f"{v:.3f}×",
    "gwei": lambda v: f"{v:,.1f} gwei",
    "s": lambda v: f"{v:,.0f} s ({v / SECONDS_PER_HOUR:.2f} h)",
    "h": lambda v: f"{v / SECONDS_PER_HOUR:,.2f} h",
    "int": lambda v: f"{int(round(v)):,}",
    "num": lambda v: f"{v:,.4g}",
}


def format_figure(v: Any) -> str:
    """A published or simulated figure in a few characters: 8.32M, 3,994, 0.366; "n/a" for a missing one."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    v = float(v)
    if abs(v) >= 1e6:
        return f"{v / 1e6:,.2f}M"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def format_value(v: Any, kind: str) -> str:
    """A metric as text: usd ($1.23M), usd_full ($1,234,568), pct (already in %), frac (0.05 -> 5.00%), x, gwei,
    s, h (seconds shown in hours), int, num, ok, or plain."""
    if v is None:
        return "n/a"
    if kind == "ok":
        return "ok" if v else "VIOLATED"
    if hasattr(v, "item") and not isinstance(v, (list, dict)):  # numpy scalar -> Python scalar
        v = v.item()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    if isinstance(v, str) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return "∞" if v > 0 else "-∞" if v < 0 else "n/a"
    if kind in FORMATS:
        return FORMATS[kind](v)
    return f"{v:,.6g}" if isinstance(v, float) else f"{v:,}"


def exact(v: Any, kind: str) -> str:
    """The full-precision text shown on hover beside a short figure ('' when the short one is exact)."""
    if kind == "usd" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:,.2f} USD"
    return ""


#: unit suffixes of metric names -> (format kind, unit shown in labels)
SUFFIXES = (
    ("_usd", "usd", "USD"),
    ("_pct", "pct", "%"),
    ("_gwei", "gwei", "gwei"),
    ("_s", "s", "s"),
    ("_seconds", "s", "s"),
    ("_eth", "num", "ETH"),
)


def kind_of(key: str) -> str:
    """Format kind from a metric's name (its unit suffix); counts by their prefix."""
    for suffix, kind, _ in SUFFIXES:
        if key.endswith(suffix):
            return kind
    if key in ("liquidations", "blocks") or key.startswith(("accounts_", "n_", "peak_liquidations")):
        return "int"
    return "plain"


def label_of(key: str) -> str:
    """'first_liquidation_s' -> 'First liquidation (s)'."""
    for suffix, _, unit in SUFFIXES:
        if key.endswith(suffix):
            return f"{key[: -len(suffix)].replace('_', ' ').capitalize()} ({unit})"
    return key.replace("_", " ").replace(".", " · ").capitalize()


#: words of a schema description that mark a parameter as a fraction (shown in %)
FRACTION_WORDS = ("fraction", "share of", "as a share")
#: acronyms kept upper-case in labels
ACRONYMS = {"ltv": "LTV", "usd": "USD", "im": "IM", "mm": "MM", "oi": "OI", "adl": "ADL", "eth": "ETH", "tx": "tx"}


def param_label(key: str) -> str:
    """'interest.slope1' -> 'Interest: slope1'; 'ltv' -> 'LTV'; 'min_profit_usd' -> 'Min profit (USD)'."""
    parts = key.split(".")
    words = []
    for i, part in enumerate(parts):
        w = label_of(part) if i == len(parts) - 1 else part.replace("_", " ")
        w = " ".join(ACRONYMS.get(x.lower(), x) for x in w.split(" "))
        words.append(w[:1].upper() + w[1:] if i == 0 else w)
    return ": ".join(words)


def format_param(v: Any, description: str = "") -> str:
    """A scenario parameter as a reader wants it: a fraction (its schema description says so) in % (0.825 ->
    82.5%), an annual rate in %/yr, large numbers with separators (5,000,000), booleans lower-case, lists joined."""
    desc = description.lower()
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and desc:
        if any(w in desc for w in FRACTION_WORDS) and abs(v) <= 1:
            return f"{100 * v:.4g}%"
        if "per year" in desc and "rate" in desc and abs(v) <= 10:
            return f"{100 * v:.4g}%/yr"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return "∞" if v > 0 else "-∞"
        if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
            return f"{v:,.0f}" if abs(v) >= 1e4 and v == int(v) else f"{v:.4g}"
        return f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_param(x, description) for x in v)
    return str(v)
