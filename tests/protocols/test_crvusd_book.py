"""The five bundled crvUSD books: provenance checks, and loading reproduces every borrower's health.

Tolerance on the controller's health(user, full=False), compared with the book's `health`:
- 5e-6 for borrowers never soft-liquidated (no stablecoin, no past loss): same formula; what is left is the
  step that brings debt from the users' snapshot to the block with one rate (the rate moved in between);
- 5e-3 for borrowers soft-liquidated now or before: the book does not say how their collateral and stablecoin
  split across their bands (spread evenly here, as crvusdsim does);
- plus the token's precision: the contract holds each band's amount to the token's decimals (8 for WBTC), so a
  position of a few satoshis carries up to N·10^-decimals / collateral of relative error;
- 1e-3 for positions with under 1 crvUSD of debt, whose integer rounding in the contract is of their own size.
"""

import json

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.crvusd_book import BookError, market_from_book, read_book
from defistress.scenarios.books import BOOKS_DIR, book_names, book_path, book_symbol
from tests.conftest import track_env

TABLE = {
    "crvusd-weth": "WETH",
    "crvusd-wsteth": "wstETH",
    "crvusd-sfrxeth": "sfrxETH",
    "crvusd-wbtc": "WBTC",
    "crvusd-tbtc": "tBTC",
}  # the table of books/crvusd/PROVENANCE.md


def test_every_bundled_book_declares_the_market_the_table_names():
    assert set(book_names()) == set(TABLE)
    for name, symbol in TABLE.items():
        raw = json.loads(book_path(name).read_text())
        assert raw["llamma_params"]["collateral_symbol"] == symbol
        assert raw["collateral_token_params"]["symbol"] == symbol
        assert raw["symbol"] == f"Curve.fi Stablecoin {symbol}"
        assert int(raw["blockNumber"]) == 19122585
    assert (BOOKS_DIR / "crvusd" / "PROVENANCE.md").is_file() and (
        BOOKS_DIR / "crvusd" / "LICENSE-crvUSDrisk"
    ).is_file()


def test_a_book_read_as_the_wrong_market_is_refused():
    with pytest.raises(BookError, match="book is the WETH market, expected WBTC"):
        read_book(book_path("crvusd-weth"), "WBTC")


@pytest.mark.parametrize("name", sorted(TABLE))
def test_loading_a_book_reproduces_every_borrowers_health_at_its_oracle_price(name):
    book = read_book(book_path(name), book_symbol(name))
    env = track_env(Env())
    ctrl = market_from_book(book, name, env, FixedPrice(book.oracle_price))
    h = ctrl.crvusd_health()
    decimals = int(json.loads(book_path(name).read_text())["collateral_token_params"]["precision"])
    soft = (book.stablecoin > 0) | (book.loss > 0)
    tol = np.where(soft, 5e-3, 5e-6)
    nb = book.n2 - book.n1 + 1
    with np.errstate(divide="ignore"):
        tol = tol + np.where(book.collateral > 0, (1 + np.abs(book.health)) * nb * 10.0**-decimals / book.collateral, 0)
    tol = np.where(book.debt < 1.0, np.maximum(tol, 1e-3), tol)
    err = np.abs(h - book.health)
    assert len(h) == len(book.owners) > 0
    assert np.all(err <= tol), f"{name}: {np.sum(err > tol)} borrowers off, worst {err.max():.3g}"
    # most borrowers are exact, not merely inside the loose bound
    assert np.median(err) < 1e-5


@pytest.mark.parametrize("name", sorted(TABLE))
def test_a_loaded_market_holds_exactly_its_borrowers_tokens_and_its_debt_in_stablecoin(name):
    book = read_book(book_path(name), book_symbol(name))
    env = track_env(Env())
    ctrl = market_from_book(book, name, env, FixedPrice(book.oracle_price))
    x, y = ctrl.amm.get_sum_xy()
    assert y.sum() == pytest.approx(book.collateral.sum(), rel=1e-12)
    assert x.sum() == pytest.approx(book.stablecoin.sum(), rel=1e-12)
    # away from the one band holding both coins every borrower keeps exactly its own coins (in that band each
    # gets the band's mix: value kept, split not)
    a = ctrl.amm.active_band
    away = (book.n1 > a) | (book.n2 < a)
    assert x[away] == pytest.approx(book.stablecoin[away], rel=1e-9, abs=1e-12)
    assert y[away] == pytest.approx(book.collateral[away], rel=1e-9, abs=1e-15)
    assert env.ledger.balance(f"{name}:amm", book.symbol) == pytest.approx(book.collateral.sum(), rel=1e-12)
    assert env.ledger.total("crvUSD") == pytest.approx(ctrl.total_debt(), rel=1e-12)
    # the debt brought to the block: the books' own totalDebt at the block, to a closed loan or so
    total_at_block = float(json.loads(book_path(name).read_text())["totalDebt"])
    assert ctrl.total_debt() == pytest.approx(total_at_block, rel=0.01)


def test_the_books_describe_the_four_crvusd_pools_and_their_peg_keepers():
    book = read_book(book_path("crvusd-weth"))
    coins = {frozenset(p.coins) for p in book.pools}
    assert coins == {frozenset({"crvUSD", c}) for c in ("USDC", "USDT", "TUSD", "USDP")}
    usdc = next(p for p in book.pools if "USDC" in p.coins)
    assert usdc.balances[usdc.coins.index("USDC")] == pytest.approx(8_248_804.246143)  # 6 decimals
    assert usdc.A == 500 and usdc.fee == pytest.approx(1e-4)
    tusd = next(p for p in book.pools if "TUSD" in p.coins)
    keeper = next(k for k in book.peg_keepers if k.pool == tusd.address)
    assert keeper.debt == pytest.approx(4_939_854.926121289) and keeper.ceiling == pytest.approx(5e6)
