"""Portfolio.validate's quick pass (`_plainly_valid`, issue 14) against the field-by-field checks it sits in front of:
`reference_validate` keeps the checks as they were before the quick pass, and on crafted books (every check failing
on its own, NaN, inf, -0.0, sums that overflow, empty books, one position, collateral and coin-margined books) and
random corruptions of valid books, `validate` must raise the same ValueError message, or pass, as the reference."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest

from defistress.protocols.margin.portfolio import (
    CALL,
    COLLATERAL,
    KIND_CODES,
    KIND_NAMES,
    PERP,
    PUT,
    SPOT,
    USD,
    Portfolio,
    is_option,
)


def reference_validate(self: Portfolio) -> None:
    """Portfolio.validate as it was before the quick pass (the field-by-field checks)."""
    if self.n_accounts < 0:
        raise ValueError(f"n_accounts={self.n_accounts}: allowed >= 0")
    p = self.account.shape
    for name in ("kind", "und", "qty", "strike", "expiry_s", "entry_price", "asset", "funding"):
        arr = getattr(self, name)
        if arr.shape != p:
            raise ValueError(f"{name}.shape={arr.shape}: allowed {p} (same as account)")
    for name in ("cash", "numeraire"):
        if getattr(self, name).shape != (self.n_accounts,):
            raise ValueError(f"{name}.shape={getattr(self, name).shape}: allowed ({self.n_accounts},)")
    if self.account.size and (self.account.min() < 0 or self.account.max() >= self.n_accounts):
        raise ValueError(f"account: allowed 0..{self.n_accounts - 1}")
    if self.kind.size and (self.kind.min() < 0 or self.kind.max() >= len(KIND_NAMES)):  # int8 codes
        raise ValueError(f"kind: allowed {dict(KIND_CODES)}")
    if self.und.size and (self.und.min() < 0 or self.und.max() >= len(self.underlyings)):
        raise ValueError(f"und: allowed 0..{len(self.underlyings) - 1} (underlyings={self.underlyings})")
    if self.numeraire.size and (self.numeraire.min() < USD or self.numeraire.max() >= max(len(self.underlyings), 0)):
        raise ValueError(f"numeraire: allowed -1 (USD) or 0..{len(self.underlyings) - 1} ({self.underlyings})")
    for name in ("qty", "strike", "expiry_s", "entry_price", "cash", "funding"):
        if not np.isfinite(getattr(self, name)).all():
            raise ValueError(f"{name}: allowed finite float64 values")
    opt = is_option(self.kind)
    if (self.strike[opt] < 0).any():
        raise ValueError("strike: allowed >= 0 for options")
    if (self.expiry_s < 0).any():
        raise ValueError("expiry_s: allowed >= 0 seconds")
    if (self.entry_price < 0).any():
        raise ValueError("entry_price: allowed >= 0 USD (0 = at the current mark)")
    coll = self.kind == COLLATERAL
    if (self.asset[coll] < 0).any() or (self.asset[coll] >= len(self.assets)).any():
        raise ValueError(f"asset: allowed 0..{len(self.assets) - 1} (assets={self.assets}) for collateral rows")
    if (self.asset[~coll] != -1).any():
        raise ValueError("asset: allowed -1 for rows that are not of kind 'collateral'")
    if (self.qty[coll] < 0).any():
        raise ValueError("qty: allowed >= 0 units of the asset for collateral rows")
    coin = self.numeraire[self.account] if self.account.size else self.account
    bad = (coin != USD) & (coin != self.und)
    if bad.any():
        i = int(self.account[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"numeraire of account {i} ({self.margin_currency(i)}): a coin-margined account holds positions "
            f"on its own underlying only; allowed underlying {self.margin_currency(i)!r}"
        )
    if self.labels and len(self.labels) != self.n_accounts:
        raise ValueError(f"labels: allowed empty or {self.n_accounts} names, got {len(self.labels)}")


def outcome(check: Callable[[], None]) -> str:
    """'ok' or the ValueError's message."""
    try:
        check()
    except ValueError as e:
        return f"ValueError: {e}"
    return "ok"


def same_verdict(pf: Portfolio) -> str:
    got, want = outcome(pf.validate), outcome(lambda: reference_validate(pf))
    assert got == want
    return got


def book(coin: bool = False) -> Portfolio:
    """Three accounts on two underlyings: a call, a put, a perp and spot (account 1 margined in ETH when `coin`)."""
    return Portfolio(
        n_accounts=3,
        underlyings=("ETH", "BTC"),
        account=np.array([0, 0, 1, 1, 2]),
        kind=np.array([CALL, PERP, PUT, SPOT, CALL], dtype=np.int8),
        und=np.array([0, 1, 0, 0, 1]),
        qty=np.array([1.5, -2.0, -1.0, 0.5, 3.0]),
        strike=np.array([2000.0, 0.0, 1800.0, 0.0, 30000.0]),
        expiry_s=np.array([86400.0, 0.0, 3600.0, 0.0, 7.0 * 86400]),
        entry_price=np.array([0.0, 2100.0, 0.0, 0.0, 0.0]),
        cash=np.array([1000.0, -50.0, 0.0]),
        numeraire=np.array([USD, 0 if coin else USD, USD]),
    )


def with_collateral() -> Portfolio:
    """`book()` with a collateral row (asset 0 of one) for account 2."""
    pf = book()
    pf.account, pf.kind = np.append(pf.account, 2), np.append(pf.kind, np.int8(COLLATERAL))
    pf.und, pf.qty = np.append(pf.und, 0), np.append(pf.qty, 4.0)
    pf.strike, pf.expiry_s = np.append(pf.strike, 0.0), np.append(pf.expiry_s, 0.0)
    pf.entry_price, pf.funding = np.append(pf.entry_price, 0.0), np.append(pf.funding, 0.0)
    pf.asset, pf.assets = np.append(pf.asset, 0), ("wstETH",)
    return pf


def test_valid_books_pass_the_quick_pass_and_the_reference() -> None:
    for pf in (book(), book(coin=True)):
        assert pf._plainly_valid()
        assert same_verdict(pf) == "ok"
    coll = with_collateral()
    assert not coll._plainly_valid()  # a collateral row is left to the field-by-field checks
    assert same_verdict(coll) == "ok"


def set_at(name: str, i: int, value: float | int) -> Callable[[Portfolio], None]:
    def edit(pf: Portfolio) -> None:
        arr = getattr(pf, name).copy()
        arr[i] = value
        setattr(pf, name, arr)

    return edit


EDITS: dict[str, Callable[[Portfolio], None]] = {
    "n_accounts -1": lambda pf: setattr(pf, "n_accounts", -1),
    "labels of two": lambda pf: setattr(pf, "labels", ("a", "b")),
    "labels of three": lambda pf: setattr(pf, "labels", ("a", "b", "c")),
    "kind shape": lambda pf: setattr(pf, "kind", pf.kind[:-1]),
    "funding shape": lambda pf: setattr(pf, "funding", np.zeros(2)),
    "asset shape": lambda pf: setattr(pf, "asset", np.full(6, -1)),
    "cash shape": lambda pf: setattr(pf, "cash", np.zeros(4)),
    "numeraire shape": lambda pf: setattr(pf, "numeraire", np.full(2, USD)),
    "account -1": set_at("account", 0, -1),
    "account n": set_at("account", 4, 3),
    "kind -1": set_at("kind", 1, -1),
    "kind 8": set_at("kind", 1, 8),
    "kind collateral without asset": set_at("kind", 3, COLLATERAL),
    "und -1": set_at("und", 2, -1),
    "und 2": set_at("und", 2, 2),
    "numeraire -2": set_at("numeraire", 2, -2),
    "numeraire 2": set_at("numeraire", 2, 2),
    "numeraire BTC for an ETH book": set_at("numeraire", 1, 1),
    "numeraire ETH for a two-underlying account": set_at("numeraire", 0, 0),
    "numeraire ETH for account 1": set_at("numeraire", 1, 0),
    "asset 0 on a call": set_at("asset", 0, 0),
    "perp strike < 0 (allowed)": set_at("strike", 1, -5.0),
    "call strike < 0": set_at("strike", 0, -5.0),
    "put strike -0.0": set_at("strike", 2, -0.0),
    "expiry -1": set_at("expiry_s", 3, -1.0),
    "expiry -0.0": set_at("expiry_s", 1, -0.0),
    "entry -1e-300": set_at("entry_price", 1, -1e-300),
    "qty -0.0": set_at("qty", 0, -0.0),
    "two qty that overflow a sum (allowed)": lambda pf: setattr(pf, "qty", np.array([1.7e308, 1.7e308, 1, 1, 1])),
    "strike and expiry sum overflows (allowed)": lambda pf: (
        setattr(pf, "strike", np.array([1.7e308, 0.0, 1.7e308, 0.0, 1.0])),
        setattr(pf, "expiry_s", np.full(5, 1.7e308)),
    ),
    "cash overflow (allowed)": lambda pf: setattr(pf, "cash", np.array([1.7e308, 1.7e308, -0.0])),
}
VALID_EDITS = {
    "labels of three",
    "numeraire ETH for account 1",
    "perp strike < 0 (allowed)",
    "put strike -0.0",
    "expiry -0.0",
    "qty -0.0",
    "two qty that overflow a sum (allowed)",
    "strike and expiry sum overflows (allowed)",
    "cash overflow (allowed)",
}
for _name in ("qty", "strike", "expiry_s", "entry_price", "funding"):
    for _v in (np.nan, np.inf, -np.inf):
        EDITS[f"{_name} {_v}"] = set_at(_name, 4, _v)
for _v in (np.nan, np.inf, -np.inf):
    EDITS[f"cash {_v}"] = set_at("cash", 1, _v)


@pytest.mark.parametrize("coin", [False, True])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_each_check_failing_alone_gives_the_references_verdict(edit: str, coin: bool) -> None:
    pf = book(coin)
    EDITS[edit](pf)
    verdict = same_verdict(pf)
    assert (verdict == "ok") == (edit in VALID_EDITS)  # each edit is the failure (or not) it is meant to be


@pytest.mark.parametrize(
    "edit",
    [
        lambda pf: None,
        set_at("asset", 5, -1),
        set_at("asset", 5, 1),
        set_at("qty", 5, -1.0),
        set_at("qty", 5, -0.0),
        set_at("kind", 5, SPOT),
        set_at("asset", 0, 0),
    ],
)
def test_collateral_books_give_the_references_verdict(edit: Callable[[Portfolio], None]) -> None:
    pf = with_collateral()
    edit(pf)
    same_verdict(pf)


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("numeraire", [USD, 0, 1, 2, -2])
def test_books_without_positions(n: int, numeraire: int) -> None:
    pf = Portfolio(
        n_accounts=n,
        underlyings=("ETH", "BTC"),
        account=np.zeros(0, np.int64),
        kind=np.zeros(0, np.int8),
        und=np.zeros(0, np.int64),
        qty=np.zeros(0),
        strike=np.zeros(0),
        expiry_s=np.zeros(0),
        entry_price=np.zeros(0),
        cash=np.ones(n),
    )
    pf.numeraire = np.full(n, numeraire)
    assert same_verdict(pf) == ("ok" if n == 0 or numeraire in (USD, 0, 1) else same_verdict(pf))
    if n and numeraire in (2, -2):
        assert same_verdict(pf) != "ok"
    pf.underlyings = ()
    same_verdict(pf)


def test_one_position_books() -> None:
    for kind in (SPOT, PERP, CALL, PUT):
        pf = Portfolio(1, ("ETH",), [0], [kind], [0], [2.0], [0.0], [0.0], [0.0], [5.0])
        assert same_verdict(pf) == "ok"
        for name, value in (("strike", -1.0), ("qty", np.nan), ("entry_price", -1.0)):
            bad = copy.deepcopy(pf)
            set_at(name, 0, value)(bad)
            same_verdict(bad)


def test_random_corruptions_of_valid_books() -> None:
    """Valid random books (both margin currencies, up to 40 positions), then one entry of one field set to a value
    drawn from edge cases (NaN, +-inf, +-0.0, -1, out-of-range codes, huge): the same verdict as the reference."""
    rng = np.random.default_rng(14)
    edge = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e308, -1e-300, 2.0, 7.0, 8.0, -2.0]
    fields = ["account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "cash", "numeraire", "funding"]
    verdicts = set()
    for _ in range(400):
        n, p = int(rng.integers(1, 6)), int(rng.integers(0, 41))
        numeraire = np.where(rng.random(n) < 0.3, 0, USD)
        account = np.sort(rng.integers(0, n, p))
        und = np.where(numeraire[account] == 0, 0, rng.integers(0, 2, p))
        kind = rng.choice(np.array([SPOT, PERP, CALL, PUT], dtype=np.int8), p)
        opt = (kind == CALL) | (kind == PUT)
        pf = Portfolio(
            n_accounts=n,
            underlyings=("ETH", "BTC"),
            account=account,
            kind=kind,
            und=und,
            qty=rng.normal(0, 10, p),
            strike=np.where(opt, rng.uniform(100, 5000, p), 0.0),
            expiry_s=np.where(opt, rng.uniform(0, 1e7, p), 0.0),
            entry_price=np.where(kind == PERP, rng.uniform(0, 3000, p), 0.0),
            cash=rng.normal(0, 1e4, n),
            numeraire=numeraire,
        )
        assert same_verdict(pf) == "ok"
        name = str(rng.choice(fields))
        arr = getattr(pf, name)
        if arr.size:
            value = edge[int(rng.integers(len(edge)))]
            if arr.dtype.kind == "i" and not (np.isfinite(value) and abs(value) < 100):
                continue  # integer codes take the small edge values
            set_at(name, int(rng.integers(arr.size)), value)(pf)
            verdicts.add(same_verdict(pf) == "ok")
    assert verdicts == {True, False}  # both verdicts were met
