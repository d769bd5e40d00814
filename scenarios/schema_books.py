"""Scenario tables for real and mixed books: Aave's fuller account model on a lending market (e-mode categories,
isolation, caps, the contract's rounding, the `evm` backend), imported snapshots (`kind = "book"`) and mixed books
drawn from distributions (`kind = "mixed_borrowers"`).

Every field is strict (no silent type coercion), bounded and finite, and says its unit. The lending extras are
mixed into `LendingAssetSpec` / `LendingSpec` with defaults that keep a scenario's behaviour as it was.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from defistress.scenarios.schema_base import Distribution, Strict
from defistress.scenarios.units import MAX_ACCOUNTS, MAX_TOKENS, MAX_USD, Bool, Float, Int, Share

#: an id of a scenario object (the same slug rule as scenarios/schema.py's ID_PATTERN)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"

#: token decimals assumed when a lending asset does not give them (the evm backend and "aave-v3" precision use them)
DEFAULT_DECIMALS = {"USDC": 6, "USDT": 6, "PYUSD": 6, "BTC": 8, "WBTC": 8, "CBBTC": 8, "TBTC": 18}


def default_decimals(symbol: str) -> int:
    return DEFAULT_DECIMALS.get(symbol.upper(), 18)


# --- the lending market's account model --------------------------------------------------------------------------
class EModeSpec(Strict):
    """An Aave v3 efficiency-mode category: assets that move together, lent against each other on better terms."""

    id: Int = Field(ge=1, le=255, description="category id (Aave: 1-255; 0 means no e-mode)")
    ltv: Float = Field(ge=0, lt=1, description="loan-to-value of the category's assets, fraction")
    liquidation_threshold: Float = Field(gt=0, lt=1, description="liquidation threshold of its assets, fraction")
    liquidation_bonus: Float = Field(ge=0, le=0.5, description="liquidation bonus, fraction (0.01 = Aave's 10100 bps)")
    label: str = Field("", max_length=64, description="a name, e.g. 'Stablecoins'")
    oracle: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="oracle id that prices every asset of the category for accounts in it (USD); none: each asset's",
    )

    @model_validator(mode="after")
    def _check(self):
        if self.liquidation_threshold < self.ltv:
            raise ValueError(f"emodes.{self.id}: liquidation_threshold must be >= ltv")
        if self.liquidation_threshold * (1 + self.liquidation_bonus) > 1:
            raise ValueError(f"emodes.{self.id}: liquidation_threshold x (1 + liquidation_bonus) must not exceed 1")
        return self


class _QuietDefaults(Strict):
    """A mixin whose `quiet_fields` a dump (and so a scenario's hash) leaves out while they hold their defaults: a
    scenario that does not use them keeps the hash it had before they existed."""

    quiet_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_default_extras(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            fields = type(self).model_fields
            for name in self.quiet_fields:
                if name in data and getattr(self, name) == fields[name].get_default(call_default_factory=True):
                    del data[name]
        return data


class LendingAssetExtras(_QuietDefaults):
    """Aave v3 reserve settings beyond risk parameters; the defaults change nothing."""

    quiet_fields: ClassVar[tuple[str, ...]] = (
        "emode_category",
        "debt_ceiling_usd",
        "borrowable_in_isolation",
        "supply_cap",
        "borrow_cap",
        "borrowing_enabled",
        "decimals",
    )

    emode_category: Int = Field(0, ge=0, le=255, description="e-mode category of the asset (0: none)")
    debt_ceiling_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="isolation-mode debt ceiling, USD (0: not an isolated collateral)"
    )
    borrowable_in_isolation: Bool = Field(False, description="accounts in isolation mode may borrow it")
    supply_cap: Float = Field(0.0, ge=0, le=MAX_TOKENS, description="supply cap, tokens (0: no cap)")
    borrow_cap: Float = Field(0.0, ge=0, le=MAX_TOKENS, description="borrow cap, tokens (0: no cap)")
    borrowing_enabled: Bool = Field(True, description="the asset may be borrowed")
    decimals: Int | None = Field(
        None, ge=0, le=36, description="token decimals (default: 6 for USDC/USDT, 8 for BTC/WBTC, else 18)"
    )


class EvmBackendSpec(Strict):
    """Where the `evm` backend runs its transactions."""

    rpc: str | None = Field(
        None,
        pattern=r"^https?://(127\.0\.0\.1|localhost)(:\d+)?/?$",
        description="URL of a local Anvil node to use (loopback only); default: start a private node for the run",
    )
    check_every: Int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="blocks between checks of the mirrored health factors against getUserAccountData (0: at the end)",
    )


class LendingExtras(_QuietDefaults):
    """Aave v3 account-model settings of a lending market; the defaults change nothing."""

    quiet_fields: ClassVar[tuple[str, ...]] = ("emodes", "precision", "backend", "evm")

    emodes: list[EModeSpec] = Field(default_factory=list, max_length=255, description="e-mode categories")
    precision: Literal["float", "aave-v3"] = Field(
        "float",
        description="'float': float64 arithmetic; 'aave-v3': the contract's rounding (8-decimal oracle prices, "
        "values floored to 1e-8 USD, average thresholds floored to basis points)",
    )
    backend: Literal["model", "evm"] = Field(
        "model",
        description="'model': the vectorised market; 'evm': every supply, borrow, repay and liquidation is a "
        "transaction on Aave v3.0.2 deployed on a local Anvil node (small runs; needs `make chain`)",
    )
    evm: EvmBackendSpec = Field(default_factory=EvmBackendSpec, description="settings of the evm backend")

    @model_validator(mode="after")
    def _check_account_model(self):
        pid = getattr(self, "id", "?")
        ids = [e.id for e in self.emodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"protocols.{pid}.emodes: duplicate category ids {sorted(ids)}")
        for sym, a in getattr(self, "assets", {}).items():
            if a.emode_category and a.emode_category not in ids:
                raise ValueError(
                    f"protocols.{pid}.assets.{sym}.emode_category: category {a.emode_category} is not in "
                    f"protocols.{pid}.emodes (ids: {ids})"
                )
        if self.backend == "evm" and getattr(self, "close_factor_rule", "aave-v3.0") != "aave-v3.0":
            raise ValueError(
                f"protocols.{pid}.backend: 'evm' runs Aave v3.0.2 bytecode, so close_factor_rule must be 'aave-v3.0'"
            )
        return self

    def check_links(self, scenario) -> None:
        oracles = {o.id: o for o in scenario.oracles}
        for e in self.emodes:
            if e.oracle is not None and e.oracle not in oracles:
                raise ValueError(
                    f"protocols.{getattr(self, 'id', '?')}.emodes.{e.id}.oracle: unknown oracle {e.oracle!r}; "
                    f"allowed: {sorted(oracles)}"
                )


def _lending(scenario, agent_id: str, protocol: str):
    p = next((q for q in scenario.protocols if q.id == protocol), None)
    if getattr(p, "kind", None) != "lending":
        lends = sorted(q.id for q in scenario.protocols if q.kind == "lending")
        raise ValueError(f"agents.{agent_id}.protocol: {protocol!r} is not a lending market; allowed: {lends}")
    return p


# --- books -------------------------------------------------------------------------------------------------------
class BookSpec(Strict):
    """An imported book (`defistress import aave-v3`): every account of the snapshot is placed in the lending market
    at the run's start, as it was on chain; the accounts are passive afterwards."""

    kind: Literal["book"] = Field("book", description="an imported book (a snapshot of defistress import aave-v3)")
    id: str = Field("book", pattern=ID_PATTERN, description="agent id (the ledger holder of the book)")
    protocol: str = Field(pattern=ID_PATTERN, description="id of the lending market the accounts are placed in")
    file: str = Field(
        min_length=1, description="snapshot Parquet, relative to the scenario file or scenarios/historic/data"
    )
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="expected SHA-256 of the file (the run fails if it differs)"
    )
    assets: dict[str, str] = Field(
        default_factory=dict,
        description="snapshot symbol -> market asset (e.g. {WETH = 'ETH'}); unnamed symbols map to themselves; "
        "rows of symbols the market does not list are an error unless mapped to '' (dropped)",
    )
    amounts: Literal["tokens", "usd"] = Field(
        "tokens",
        description="'tokens': token amounts as on chain; 'usd': each position keeps its USD value at the "
        "snapshot's oracle prices, so health factors start as on chain whatever the scenario's prices",
    )
    scale: Float = Field(1.0, gt=0, le=1e6, description="multiplies every position, dimensionless")
    reserve_params: Literal["snapshot", "scenario"] = Field(
        "snapshot",
        description="'snapshot': the market takes the snapshot's reserve parameters (LTV, threshold, bonus, "
        "protocol fee, reserve factor, caps, isolation, e-mode) except the fields the scenario sets; "
        "'scenario': the scenario's alone",
    )

    def check_links(self, scenario) -> None:
        _lending(scenario, self.id, self.protocol)


class MixedBorrowersSpec(Strict):
    """A passive book drawn from distributions: each account holds several collateral assets and several debts in
    random shares around the given means, some accounts in an e-mode category."""

    kind: Literal["mixed_borrowers"] = Field(
        "mixed_borrowers", description="a passive book with several collateral assets and debts per account"
    )
    id: str = Field("mixed", pattern=ID_PATTERN, description="agent id (the ledger holder of the book)")
    protocol: str = Field(pattern=ID_PATTERN, description="id of the lending market")
    accounts: Int = Field(gt=0, le=MAX_ACCOUNTS, description="number of accounts (1..5,000,000)")
    collateral: dict[str, Share] = Field(
        min_length=1, description="asset -> mean share of an account's collateral value (shares sum to 1)"
    )
    collateral_concentration: Float = Field(
        2.0,
        gt=0,
        le=1e6,
        description="Dirichlet concentration of the collateral shares: small, most accounts hold one asset; "
        "large, every account holds the mean mix (dimensionless)",
    )
    debt: dict[str, Share] = Field(min_length=1, description="asset -> mean share of an account's debt value (sum 1)")
    debt_concentration: Float = Field(
        2.0, gt=0, le=1e6, description="Dirichlet concentration of the debt shares (dimensionless)"
    )
    emode: Int = Field(0, ge=0, le=255, description="e-mode category some accounts use (0: none)")
    emode_share: Share = Field(
        0.0, description="share of accounts in the e-mode category; their debt is drawn from the category's assets"
    )
    size_usd: Distribution = Field(
        Distribution(distribution="lognormal", median=20_000, sigma=1.2, min=100, max=50_000_000),
        description="collateral value per account, USD",
    )
    health_factor: Distribution = Field(
        Distribution(distribution="lognormal", median=1.6, sigma=0.25, min=1.02, max=10),
        description="health factor at the start, dimensionless",
    )

    @model_validator(mode="after")
    def _check(self):
        for name in ("collateral", "debt"):
            shares = getattr(self, name)
            total = sum(shares.values())
            if min(shares.values()) < 0 or not np.isclose(total, 1.0):
                raise ValueError(f"agents.{self.id}.{name}: shares must be >= 0 and sum to 1, got {total}")
        if self.emode_share > 0 and not self.emode:
            raise ValueError(f"agents.{self.id}.emode_share: needs agents.{self.id}.emode (a category id)")
        return self

    def check_links(self, scenario) -> None:
        p = _lending(scenario, self.id, self.protocol)
        for asset in list(self.collateral) + list(self.debt):
            if asset not in p.assets:
                raise ValueError(
                    f"agents.{self.id}: asset {asset!r} is not listed in protocols.{p.id}.assets ({sorted(p.assets)})"
                )
        if self.emode:
            ids = [e.id for e in p.emodes]
            if self.emode not in ids:
                raise ValueError(f"agents.{self.id}.emode: category {self.emode} is not in protocols.{p.id}.emodes")
            inside = [a for a in self.debt if p.assets[a].emode_category == self.emode and self.debt[a] > 0]
            if self.emode_share > 0 and not inside:
                raise ValueError(
                    f"agents.{self.id}: accounts in e-mode {self.emode} need a debt asset of that category; "
                    f"none of {sorted(self.debt)} is in it"
                )
