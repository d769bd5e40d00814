"""Reader of the risk-array records of a CME SPAN risk-parameter file (expanded unpacked format, ".pa2").

Layout: CME Group, "SPAN Risk Parameter File Layouts for the Positional Formats", Type 8 records, Expanded
format (cmegroupclientsite.atlassian.net/wiki/spaces/pubspan/pages/46235915/Type+8+-+Expanded; overview
www.cme-ch.com/span/spanl300.htm). Each contract has two physical records (1-based columns):

- "81": 1-2 record id, 3-5 exchange acronym, 6-15 commodity (product) code, 16-25 underlying commodity code,
  26-28 product type code, 29 option right code (C/P, options only), 30-35 futures contract month CCYYMM,
  36-37 futures day/week code, 39-44 option contract month CCYYMM, 45-46 option day/week code, 48-54 option
  strike price 9(7), then array values 1..9 as 5 digits 9(5) each followed by a sign ("+"/"-") in 55-108,
  109-122 high-precision settlement price 9(14), 123 its flag;
- "82": the same key in 1-54, array values 10..16 (5 digits + sign each) in 55-96, 97-101 SPAN composite
  delta 9V9(4) with its sign in 102, 103-110 implied volatility 99V9(6), 111-117 settlement price 9(7) with
  its sign in 118, 119 strike sign, 120-124 current delta 9V9(4) with its sign in 125.

Array values are losses of one long contract (positive = loss) in the performance-bond currency, in units of
10^-d where d is the product's "risk array value decimal locator" (type "B" record, not read here: pass
`value_scale`); strikes and settlement prices likewise (`strike_scale`, `price_scale`). Other record types are
skipped. Only the risk arrays are read: scan ranges, spreads and the other parameter records are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from defistress.protocols.margin.span_arrays import PublishedRiskArrays, RiskArray

_KEY = slice(2, 54)  # columns 3-54: exchange .. strike, identical in the 81 and 82 records of a contract


@dataclass(frozen=True)
class SpanRecord:
    """One contract's risk array as read from a pair of 81/82 records (raw integers, no scaling)."""

    line: int  # 1-based line of the 81 record
    exchange: str
    product: str
    underlying_product: str
    product_type: str
    right: str  # "C", "P" or "" (futures)
    futures_month: str  # CCYYMM
    option_month: str  # CCYYMM or ""
    strike: int
    values: tuple[int, ...]  # 16 array values, signed
    composite_delta: float  # futures-equivalents per contract
    settlement: int | None  # settlement price (82 record), signed, unscaled; None if blank

    @property
    def kind(self) -> str:
        return {"C": "call", "P": "put"}.get(self.right, "future")

    @property
    def month(self) -> str:
        """The contract month that sets the expiry: the option month for options, else the futures month."""
        return self.option_month if self.right in ("C", "P") and self.option_month else self.futures_month


def _field(line: str, lineno: int, a: int, b: int, name: str, signed_at: int | None = None) -> int:
    """Integer in 1-based columns a..b, with an optional sign column; blank = 0."""
    raw = line[a - 1 : b]
    text = raw.strip()
    value = 0
    if text:
        if not text.isdigit():
            raise ValueError(f"line {lineno}, {name} (columns {a}-{b}): {raw!r} is not a number")
        value = int(text)
    if signed_at is not None:
        sign = line[signed_at - 1 : signed_at]
        if sign not in ("+", "-", " ", ""):
            raise ValueError(f"line {lineno}, sign of {name} (column {signed_at}): {sign!r}; allowed '+', '-', ' '")
        value = -value if sign == "-" else value
    return value


def _array_values(line: str, lineno: int, first: int, count: int, start_index: int) -> list[int]:
    out = []
    for j in range(count):
        a = 55 + 6 * j
        out.append(_field(line, lineno, a, a + 4, f"Array Value {start_index + j}", signed_at=a + 5))
    return out


def parse_span_text(text: str) -> list[SpanRecord]:
    """Risk arrays of every 81/82 record pair in the text of an expanded-format SPAN file."""
    records: list[SpanRecord] = []
    pending: tuple[int, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n").ljust(126)
        rid = line[:2]
        if rid == "81":
            if pending is not None:
                raise ValueError(f"line {lineno}: record 81 follows an 81 record (line {pending[0]}) without its 82")
            pending = (lineno, line)
        elif rid == "82":
            if pending is None or pending[1][_KEY] != line[_KEY]:
                raise ValueError(f"line {lineno}: record 82 without a preceding 81 record of the same contract")
            n81, l81 = pending
            pending = None
            values = _array_values(l81, n81, 55, 9, 1) + _array_values(line, lineno, 55, 7, 10)
            delta = _field(line, lineno, 97, 101, "SPAN Composite Delta", signed_at=102) / 1e4  # 9V9(4)
            settle_raw = line[110:117].strip()
            records.append(
                SpanRecord(
                    line=n81,
                    exchange=l81[2:5].strip(),
                    product=l81[5:15].strip(),
                    underlying_product=l81[15:25].strip(),
                    product_type=l81[25:28].strip(),
                    right=l81[28:29].strip(),
                    futures_month=l81[29:35].strip(),
                    option_month=l81[38:44].strip(),
                    strike=_field(l81, n81, 48, 54, "Option Strike Price"),
                    values=tuple(values),
                    composite_delta=delta,
                    settlement=_field(line, lineno, 111, 117, "Settlement Price", signed_at=118)
                    if settle_raw
                    else None,
                )
            )
    if pending is not None:
        raise ValueError(f"line {pending[0]}: record 81 without its 82 record")
    return records


def read_span_file(path: str | Path) -> list[SpanRecord]:
    """Risk-array records of a SPAN file (expanded unpacked format); errors name the file and line."""
    p = Path(path)
    try:
        return parse_span_text(p.read_text(encoding="ascii", errors="strict"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not an ASCII SPAN file ({e})") from e
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e


def risk_arrays(
    records: list[SpanRecord],
    product: str,
    expiry_s: Mapping[str, float],
    value_scale: float = 1.0,
    strike_scale: float = 1.0,
    price_scale: float = 1.0,
    contract_size: float = 1.0,
) -> PublishedRiskArrays:
    """The published arrays of one product (commodity code, its options included: records whose product or
    underlying product is `product`) as Span input. `expiry_s` maps each contract month (CCYYMM) to seconds to
    expiry; array values, strikes and prices are multiplied by their scale (10^-decimal locator)."""
    chosen = [r for r in records if product in (r.product, r.underlying_product)]
    if not chosen:
        found = sorted({r.product for r in records})
        raise ValueError(f"product={product!r}: no risk-array record; allowed {found}")
    out = []
    for r in chosen:
        if r.month not in expiry_s:
            raise ValueError(
                f"expiry_s: no entry for contract month {r.month!r} (line {r.line}); given {sorted(expiry_s)}"
            )
        out.append(
            RiskArray(
                kind=r.kind,
                expiry_s=float(expiry_s[r.month]),
                losses=tuple(v * value_scale for v in r.values),
                composite_delta=r.composite_delta,
                strike=r.strike * strike_scale if r.kind != "future" else 0.0,
                contract_size=contract_size,
                price=None if r.settlement is None else r.settlement * price_scale,
            )
        )
    return PublishedRiskArrays(tuple(out))
