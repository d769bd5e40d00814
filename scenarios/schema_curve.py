"""Scenario tables for Curve: crvUSD markets (LLAMMA + controller) loaded from real books, peg keepers,
StableSwap pools as venues, and the agents that trade and liquidate against them.

Imported by scenarios/schema.py, which owns the unions of venue, protocol and agent specs. Every field has
its unit and bounds; strict types (no "3" for 3). Cross-references to other tables (an oracle id, a venue id
used by a peg keeper) are checked here where the table alone can tell, and by the builders
(sim/engine/build_curve.py) otherwise, with the key path named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from defistress.scenarios.books import book_names, book_path, book_symbol
from defistress.scenarios.schema_base import Strict
from defistress.scenarios.units import MAX_TOKENS, Seconds


class StrictCurve(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_book(book: str, where: str) -> None:
    if book_path(book) is None and not book.endswith(".json"):
        raise ValueError(f"{where}: unknown book {book!r}; allowed: {book_names()} or a path to a .json book file")


# --- venues ----------------------------------------------------------------------------------------------
class StableSwapSpec(StrictCurve):
    """A Curve StableSwap pool (protocols/stableswap.py): `coins` are market assets; balances are given in
    token units, or taken from a crvUSD book's pool with the same coins (`book`)."""

    id: str = Field(min_length=1, description="venue id (also its ledger holder)")
    kind: Literal["stableswap"] = Field("stableswap", description="a Curve StableSwap pool (protocols/stableswap.py)")
    coins: list[str] = Field(min_length=2, max_length=8, description="market assets in pool order (coin 0 first)")
    A: float | None = Field(None, ge=1, le=1e6, description="amplification A·n^(n−1) (Stableswap.vy _A / A_PRECISION)")
    fee: float | None = Field(None, ge=0, le=0.05, description="swap fee, fraction of the output (0.0001 = 1 bp)")
    balances: list[Annotated[float, Field(gt=0, le=MAX_TOKENS)]] | None = Field(
        None, description="initial balances, token units, in coin order (each > 0)"
    )
    book: str | None = Field(None, description="crvUSD book whose pool of the same coins gives balances, A, fee")
    ma_exp_time: Seconds = Field(866.0, gt=0, le=30 * 86400, description="EMA time of the pool's price oracle, s")

    @property
    def pair(self) -> tuple[str, ...]:
        """Every coin (the venue checks and graph edges iterate over `pair`)."""
        return tuple(self.coins)

    @model_validator(mode="after")
    def _check(self):
        if len(set(self.coins)) != len(self.coins):
            raise ValueError(f"venues.{self.id}.coins: duplicate coins in {self.coins}")
        if self.book is not None:
            _check_book(self.book, f"venues.{self.id}.book")
        elif self.balances is None or self.A is None or self.fee is None:
            raise ValueError(f"venues.{self.id}: give 'balances', 'A' and 'fee', or a 'book' to take them from")
        if self.balances is not None:
            if len(self.balances) != len(self.coins):
                raise ValueError(
                    f"venues.{self.id}.balances: {len(self.balances)} values for {len(self.coins)} coins {self.coins}"
                )
            if any(not b > 0 for b in self.balances):
                raise ValueError(f"venues.{self.id}.balances: every balance must be > 0 token units")
        return self


# --- protocols --------------------------------------------------------------------------------------------
class LlammaSpec(StrictCurve):
    """A crvUSD mint market (LLAMMA + controller) loaded from a real book: every borrower, band and parameter
    of the file (protocols/crvusd_book.py); the optional fields override the book's values."""

    id: str = Field(min_length=1, description="protocol id")
    kind: Literal["llamma"] = Field("llamma", description="a crvUSD market: LLAMMA + controller from a real book")
    book: str = Field(min_length=1, description="bundled book name (e.g. 'crvusd-weth') or a .json file path")
    collateral: str = Field(
        min_length=1, description="market asset standing for the book's collateral (default: the book's symbol)"
    )
    stablecoin: str = Field("crvUSD", min_length=1, description="market asset of the borrowed stablecoin")
    oracles: dict[str, str] = Field(description="{collateral asset = oracle id}: the AMM's price_oracle, USD")
    fee: float | None = Field(None, ge=0, lt=0.5, description="AMM fee, fraction of the input (book: 0.006)")
    loan_discount: float | None = Field(None, gt=0, lt=1, description="Controller loan_discount, fraction")
    liquidation_discount: float | None = Field(None, gt=0, lt=1, description="Controller liquidation_discount")
    rate: Literal["policy", "book"] = Field(
        "policy",
        description="interest: 'policy' = AggMonetaryPolicy from the book's rate0/sigma/fraction, the crvUSD price "
        "and peg-keeper debt; 'book' = the book's rate held constant",
    )
    price_oracle: str | None = Field(
        None, description="oracle id of the stablecoin's USD price for the policy (default: aggregated pools, or 1)"
    )
    policy_other_debt: float = Field(
        0.0, ge=0, le=1e12, description="debt of crvUSD markets not in the scenario that the policy counts, crvUSD"
    )
    liquidates_into: list[str] = Field(
        default_factory=list,
        description="venue ids where seized collateral is sold (graph edges; the llamma liquidator sells outside)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_collateral(cls, data):
        if isinstance(data, dict) and "collateral" not in data and isinstance(data.get("book"), str):
            symbol = book_symbol(data["book"])
            if symbol is not None:
                data = {**data, "collateral": symbol}
        return data

    @model_validator(mode="after")
    def _check(self):
        _check_book(self.book, f"protocols.{self.id}.book")
        if list(self.oracles) != [self.collateral]:
            raise ValueError(
                f"protocols.{self.id}.oracles: must name exactly the collateral {self.collateral!r}, "
                f"got {sorted(self.oracles)}"
            )
        if self.collateral == self.stablecoin:
            raise ValueError(f"protocols.{self.id}: collateral and stablecoin must differ")
        if self.loan_discount is not None and self.liquidation_discount is not None:
            if not self.liquidation_discount < self.loan_discount:
                raise ValueError(f"protocols.{self.id}: liquidation_discount must be below loan_discount")
        return self

    def collateral_assets(self) -> list[str]:
        return [self.collateral]

    def issued_assets(self) -> list[str]:
        return [self.stablecoin]

    @property
    def assets(self) -> dict[str, None]:
        return {self.collateral: None, self.stablecoin: None}

    def book_file(self, base: Path | None = None) -> Path:
        """The book's file: a bundled name, else a path (relative to `base`)."""
        p = book_path(self.book)
        if p is not None:
            return p
        return (base / self.book) if base is not None else Path(self.book)


class PegKeeperSpec(StrictCurve):
    """A crvUSD peg keeper acting on one two-coin stableswap venue (protocols/peg_keeper.py). Debt and ceiling
    come from a book's keeper of the pool with the same coins, or are given."""

    id: str = Field(min_length=1, description="protocol id (the keeper's ledger holder)")
    kind: Literal["peg_keeper"] = Field("peg_keeper", description="a crvUSD peg keeper on a stableswap venue")
    pool: str = Field(min_length=1, description="stableswap venue id the keeper provides to / withdraws from")
    stablecoin: str = Field("crvUSD", min_length=1, description="the pegged stablecoin (a coin of the pool)")
    book: str | None = Field(None, description="crvUSD book whose keeper of this pool gives debt and ceiling")
    debt: float | None = Field(
        None, ge=0, le=MAX_TOKENS, description="stablecoin the keeper has put in the pool, token units"
    )
    ceiling: float | None = Field(None, ge=0, le=MAX_TOKENS, description="the keeper's debt ceiling, stablecoin units")
    caller_share: float = Field(0.2, ge=0, le=1, description="share of the keeper's profit paid to the caller")
    oracles: dict[str, str] = Field(default_factory=dict, description="none: the keeper reads aggregated pools")

    @model_validator(mode="after")
    def _check(self):
        if self.book is not None:
            _check_book(self.book, f"protocols.{self.id}.book")
        elif self.debt is None or self.ceiling is None:
            raise ValueError(f"protocols.{self.id}: give 'debt' and 'ceiling', or a 'book' to take them from")
        if self.debt is not None and self.ceiling is not None and self.debt > self.ceiling:
            raise ValueError(f"protocols.{self.id}: debt {self.debt} above ceiling {self.ceiling}")
        if self.oracles:
            raise ValueError(f"protocols.{self.id}.oracles: a peg keeper reads no oracle (allowed: empty)")
        return self

    def collateral_assets(self) -> list[str]:
        return []

    def issued_assets(self) -> list[str]:
        return [self.stablecoin]

    @property
    def assets(self) -> dict[str, None]:
        return {self.stablecoin: None}


# --- agents -----------------------------------------------------------------------------------------------
class LlammaArbitrageurSpec(StrictCurve):
    """Trades LLAMMA against the outside market (agents/llamma_arbitrageur.py): moves collateral through bands."""

    kind: Literal["llamma_arbitrageur"] = Field(
        "llamma_arbitrageur", description="trades LLAMMA against the outside market"
    )
    id: str = Field("llamma-arbitrageur", min_length=1, description="agent id (its ledger holder)")
    shared_with: list[str] = Field(default_factory=list, description="llamma protocol ids (default: all)")
    capital_usd: float = Field(gt=0, le=1e12, description="inventory, USD, half stablecoin and half collateral")
    min_profit_usd: float = Field(5.0, ge=0, le=1e9, description="smallest profit after gas worth a trade, USD")
    gas_budget_eth: float = Field(50.0, gt=0, le=1e6, description="ETH held for gas")
    priority_fee_gwei: float = Field(2.0, ge=0, le=1e5, description="tip per gas, gwei")
    max_trade_share: float = Field(0.5, gt=0, le=1, description="largest trade as a share of the inventory")


class LlammaLiquidatorSpec(StrictCurve):
    """Hard-liquidates crvUSD loans below zero health when profitable (agents/llamma_liquidator.py)."""

    kind: Literal["llamma_liquidator"] = Field(
        "llamma_liquidator", description="hard-liquidates crvUSD loans below zero health"
    )
    id: str = Field("llamma-liquidator", min_length=1, description="agent id (its ledger holder)")
    shared_with: list[str] = Field(default_factory=list, description="llamma protocol ids (default: all)")
    capital_usd: float = Field(gt=0, le=1e12, description="stablecoin capital, USD")
    min_profit_usd: float = Field(20.0, ge=0, le=1e9, description="smallest profit after gas worth a liquidation")
    gas_budget_eth: float = Field(50.0, gt=0, le=1e6, description="ETH held for gas")
    priority_fee_gwei: float = Field(3.0, ge=0, le=1e5, description="tip per gas, gwei")
    max_tx_per_block: int = Field(5, ge=1, le=1000, description="liquidations sent per block")
    private_orderflow: bool = Field(True, description="private relay: a liquidation that would revert pays no gas")


class PegKeeperCallerSpec(StrictCurve):
    """Calls peg keepers' update whenever they can act (agents/peg_keeper_caller.py)."""

    kind: Literal["peg_keeper_caller"] = Field(
        "peg_keeper_caller", description="calls peg keepers' update when they can act"
    )
    id: str = Field("peg-keeper-caller", min_length=1, description="agent id (its ledger holder)")
    shared_with: list[str] = Field(default_factory=list, description="peg_keeper protocol ids (default: all)")
    gas_budget_eth: float = Field(10.0, gt=0, le=1e6, description="ETH held for gas")
    priority_fee_gwei: float = Field(1.0, ge=0, le=1e5, description="tip per gas, gwei")
