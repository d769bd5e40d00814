"""Deploy Aave v3 core (npm @aave/core-v3 1.19.3, protocol v3.0.2) from scratch on a local chain and list reserves
declaratively; `AaveMarket` holds the web3 handles and a few clear (not fast) user helpers.

Deployment order (each step needs the one before; ~0.3 s and ~65M gas for four reserves on Anvil):
 1. PoolAddressesProvider(marketId, owner); provider.setACLAdmin(admin) (ACLManager's constructor reads it)
 2. ACLManager(provider); provider.setACLManager; pool / risk / emergency / asset-listing admin roles
 3. libraries BorrowLogic, BridgeLogic, EModeLogic, LiquidationLogic, PoolLogic, SupplyLogic; FlashLoanLogic (links
    BorrowLogic)
 4. Pool(provider) linked with the seven libraries; provider.setPoolImpl (creates the proxy, calls initialize)
 5. ConfiguratorLogic; PoolConfigurator linked; provider.setPoolConfiguratorImpl
 6. assets (MintableERC20) and price feeds (MockAggregator, or the project's RoundFeed), 8 decimals, USD
 7. AaveOracle(provider, assets, feeds, fallback 0x0, base currency 0x0, unit 1e8); provider.setPriceOracle
 8. AaveProtocolDataProvider; provider.setPoolDataProvider
 9. AToken / StableDebtToken / VariableDebtToken implementations built with the Pool PROXY address ('87' otherwise)
10. DefaultReserveInterestRateStrategy per distinct rate parameters (ray)
11. configurator.initReserves (~2.3M gas per reserve: chunks of 5)
12. per reserve: collateral parameters, borrowing, reserve factor, liquidation protocol fee, caps, debt ceiling
    (before any supply: with an old ceiling of 0 it requires no suppliers, '18'), borrowable in isolation
13. e-mode: setEModeCategory, then setAssetEModeCategory
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from web3 import Web3

from defistress.protocols.evm.artifacts import load_artifact
from defistress.protocols.evm.rpc import Chain, receipt_gas
from defistress.protocols.lending import AssetParams
from defistress.protocols.lending_accounts import EModeCategory

RAY = 10**27
BASE_CURRENCY_UNIT = 10**8  # USD with 8 decimals, like Chainlink USD feeds (AaveOracle BASE_CURRENCY_UNIT)
ZERO = "0x0000000000000000000000000000000000000000"
POOL_LIBRARIES = (
    "BorrowLogic",
    "BridgeLogic",
    "EModeLogic",
    "FlashLoanLogic",
    "LiquidationLogic",
    "PoolLogic",
    "SupplyLogic",
)
VARIABLE, STABLE = 2, 1  # interestRateMode
INIT_RESERVES_CHUNK = 5
MOCK_AGGREGATOR_ANSWER_SLOT = 0  # MockAggregator: `int256 private _latestAnswer` is storage slot 0


def to_ray(x: float | str | Decimal) -> int:
    return int(Decimal(str(x)) * RAY)


def usd_to_base(price_usd: float | str | Decimal) -> int:
    """USD -> oracle base units (8 decimals), rounded half to even like numpy's round on the float model side."""
    return int((Decimal(str(price_usd)) * BASE_CURRENCY_UNIT).to_integral_value())


def bps(fraction: float) -> int:
    """A fraction as Aave basis points (0.825 -> 8250)."""
    return int(Decimal(str(fraction)) * 10_000)


@dataclass(frozen=True)
class RateParams:
    """DefaultReserveInterestRateStrategy parameters as annual fractions (converted to ray)."""

    optimal_usage_ratio: float = 0.80
    base_variable_borrow_rate: float = 0.0
    variable_rate_slope1: float = 0.04
    variable_rate_slope2: float = 0.75
    stable_rate_slope1: float = 0.005
    stable_rate_slope2: float = 0.75
    base_stable_rate_offset: float = 0.02
    stable_rate_excess_offset: float = 0.05
    optimal_stable_to_total_debt_ratio: float = 0.20

    def as_ray_args(self) -> list[int]:
        keys = (
            "optimal_usage_ratio",
            "base_variable_borrow_rate",
            "variable_rate_slope1",
            "variable_rate_slope2",
            "stable_rate_slope1",
            "stable_rate_slope2",
            "base_stable_rate_offset",
            "stable_rate_excess_offset",
            "optimal_stable_to_total_debt_ratio",
        )
        return [to_ray(getattr(self, k)) for k in keys]


@dataclass(frozen=True)
class ReserveParams:
    """One listed asset. Basis points (10,000 = 100%); liquidation_bonus includes the principal (10500 = +5%);
    protocol_fee is the share of the bonus that goes to the treasury. Caps in whole tokens (0: none);
    debt_ceiling_usd > 0 makes the asset an isolation-mode collateral (stored with 2 decimals)."""

    symbol: str
    decimals: int
    price_usd: float
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    protocol_fee: int = 1000
    reserve_factor: int = 1000
    supply_cap: int = 0
    borrow_cap: int = 0
    borrowing_enabled: bool = True
    emode_category: int = 0
    debt_ceiling_usd: float = 0
    borrowable_in_isolation: bool = False
    rates: RateParams = field(default_factory=RateParams)


@dataclass(frozen=True)
class EModeParams:
    """An e-mode category: its own LTV / threshold / bonus (bps) and, optionally, a price source priced at
    `price_usd` (a feed registered in AaveOracle under a synthetic asset address)."""

    id: int
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    price_usd: float | None = None


@dataclass
class Reserve:
    params: ReserveParams
    token: Any  # MintableERC20
    feed: Any  # MockAggregator or RoundFeed
    strategy: Any
    a_token: Any = None
    variable_debt: Any = None
    stable_debt: Any = None
    reserve_id: int = 0

    @property
    def address(self) -> str:
        return str(self.token.address)

    def units(self, amount: float | str | Decimal) -> int:
        """Whole tokens -> base units (exact for decimal input)."""
        return int(Decimal(str(amount)) * 10**self.params.decimals)


@dataclass
class AaveMarket:
    chain: Chain
    admin: str
    treasury: str
    provider: Any
    acl: Any
    pool: Any
    configurator: Any
    oracle: Any
    data_provider: Any
    libraries: dict[str, str]
    reserves: dict[str, Reserve]
    feed_kind: str = "mock"
    emode_feeds: dict[int, Any] = field(default_factory=dict)  # category -> its price-source feed
    emode_sources: dict[int, str] = field(default_factory=dict)  # category -> price-source address
    gas: dict[str, int] = field(default_factory=dict)  # step -> gas used
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall time, seconds

    # --- prices ----------------------------------------------------------------------------------------
    def set_feed_answer(self, feed: Any, answer: int) -> None:
        """Write a feed's answer (base units): MockAggregator by storage (no transaction, no block), RoundFeed by a
        `transmit` transaction from the admin (a new round stamped with the block time)."""
        if answer <= 0:
            raise ValueError(f"a feed answer must be > 0 (AaveOracle falls back to 0x0 and reverts), got {answer}")
        if self.feed_kind == "mock":
            self.chain.set_storage(feed.address, MOCK_AGGREGATOR_ANSWER_SLOT, answer)
        else:
            self.chain.send_tx(self.chain.codec(feed, "transmit").tx(self.admin, answer, gas=200_000))

    def set_price(self, symbol: str, price_usd: float | str | Decimal) -> int:
        """Set an asset's oracle price (USD); returns it in base units."""
        v = usd_to_base(price_usd)
        self.set_feed_answer(self.reserves[symbol].feed, v)
        return v

    def set_emode_price(self, category: int, price_usd: float | str | Decimal) -> int:
        v = usd_to_base(price_usd)
        self.set_feed_answer(self.emode_feeds[category], v)
        return v

    def price(self, symbol: str) -> int:
        return int(self.chain.call(self.oracle.functions.getAssetPrice(self.reserves[symbol].address)))

    # --- user helpers (clear, not fast) ------------------------------------------------------------------
    def mint(self, symbol: str, to: str, amount: int) -> dict[str, Any]:
        return self.chain.transact(self.reserves[symbol].token.functions.mint(to, amount), to)

    def approve(self, symbol: str, owner: str, amount: int = 2**256 - 1) -> dict[str, Any]:
        return self.chain.transact(self.reserves[symbol].token.functions.approve(self.pool.address, amount), owner)

    def supply(self, symbol: str, user: str, amount: int, mint: bool = True, approve: bool = True) -> dict[str, Any]:
        if mint:
            self.mint(symbol, user, amount)
        if approve:
            self.approve(symbol, user)
        return self.chain.transact(self.pool.functions.supply(self.reserves[symbol].address, amount, user, 0), user)

    def borrow(self, symbol: str, user: str, amount: int, rate_mode: int = VARIABLE) -> dict[str, Any]:
        asset = self.reserves[symbol].address
        return self.chain.transact(self.pool.functions.borrow(asset, amount, rate_mode, 0, user), user)

    def repay(self, symbol: str, user: str, amount: int) -> dict[str, Any]:
        asset = self.reserves[symbol].address
        return self.chain.transact(self.pool.functions.repay(asset, amount, VARIABLE, user), user)

    def set_emode(self, user: str, category: int) -> dict[str, Any]:
        return self.chain.transact(self.pool.functions.setUserEMode(category), user)

    def use_as_collateral(self, symbol: str, user: str, on: bool) -> dict[str, Any]:
        return self.chain.transact(
            self.pool.functions.setUserUseReserveAsCollateral(self.reserves[symbol].address, on), user
        )

    def liquidation_fn(self, collateral: str, debt: str, user: str, debt_to_cover: int, receive_atoken: bool = False):
        return self.pool.functions.liquidationCall(
            self.reserves[collateral].address, self.reserves[debt].address, user, debt_to_cover, receive_atoken
        )

    def liquidate(
        self,
        liquidator: str,
        collateral: str,
        debt: str,
        user: str,
        debt_to_cover: int,
        receive_atoken: bool = False,
        check: bool = True,
    ) -> dict[str, Any]:
        fn = self.liquidation_fn(collateral, debt, user, debt_to_cover, receive_atoken)
        return self.chain.transact(fn, liquidator, check=check)

    def account_data(self, user: str) -> dict[str, int]:
        """getUserAccountData: base-currency values (8 decimals), threshold and ltv in bps, HF in wad."""
        v = self.chain.call(self.pool.functions.getUserAccountData(user))
        keys = ("total_collateral_base", "total_debt_base", "available_borrows_base")
        return dict(zip((*keys, "current_liquidation_threshold", "ltv", "health_factor"), v))

    def account_data_many(self, users: list[str], block: str = "latest") -> list[tuple[int, ...]]:
        """getUserAccountData of many users in one JSON-RPC batch (tuples in the contract's order)."""
        codec = self.chain.codec(self.pool, "getUserAccountData")
        return self.chain.batch_call([codec.prepared(u) for u in users], block)


def model_assets(reserves: list[ReserveParams]) -> list[AssetParams]:
    """The reserves as the model's parameters (fractions from basis points)."""
    return [
        AssetParams(
            r.symbol,
            r.ltv / 1e4,
            r.liquidation_threshold / 1e4,
            r.liquidation_bonus / 1e4 - 1.0,
            protocol_fee=r.protocol_fee / 1e4,
            reserve_factor=r.reserve_factor / 1e4,
            emode_category=r.emode_category,
            debt_ceiling=float(r.debt_ceiling_usd),
            borrowable_in_isolation=r.borrowable_in_isolation,
            decimals=r.decimals,
        )
        for r in reserves
    ]


def model_emodes(emodes: list[EModeParams]) -> list[EModeCategory]:
    return [
        EModeCategory(e.id, e.ltv / 1e4, e.liquidation_threshold / 1e4, e.liquidation_bonus / 1e4 - 1.0, e.label)
        for e in emodes
    ]


def default_reserves() -> list[ReserveParams]:
    """Mainnet-like v3 parameters for four assets (WETH, WBTC, USDC, DAI; stablecoins in e-mode category 1)."""
    stable = RateParams(optimal_usage_ratio=0.90, variable_rate_slope1=0.04, variable_rate_slope2=0.60)
    return [
        ReserveParams("WETH", 18, 2000, 8000, 8250, 10500, reserve_factor=1500),
        ReserveParams("WBTC", 8, 30000, 7000, 7500, 10650, reserve_factor=2000),
        ReserveParams("USDC", 6, 1, 7700, 8000, 10450, emode_category=1, borrowable_in_isolation=True, rates=stable),
        ReserveParams("DAI", 18, 1, 7500, 8000, 10500, emode_category=1, borrowable_in_isolation=True, rates=stable),
    ]


def default_emodes() -> list[EModeParams]:
    return [EModeParams(1, 9300, 9500, 10100, "Stablecoins")]


def _emode_source_address(category: int) -> str:
    """A synthetic asset address under which AaveOracle knows an e-mode category's price source."""
    return Web3.to_checksum_address(f"0x{'e0de' * 9}{category:04x}")


def deploy_aave(
    chain: Chain,
    reserves: list[ReserveParams] | None = None,
    emodes: list[EModeParams] | None = None,
    admin: str | None = None,
    treasury: str | None = None,
    market_id: str = "defistress",
    feed: Literal["mock", "rounds"] = "mock",
) -> AaveMarket:
    """Deploy Aave v3.0.2 with `reserves` listed and `emodes` configured; returns the handles. `feed`: price feeds
    are Aave's MockAggregator (prices set by storage writes) or the project's RoundFeed (prices are rounds sent as
    transactions and readable with latestRoundData / getRoundData)."""
    reserves = default_reserves() if reserves is None else list(reserves)
    emodes = default_emodes() if emodes is None else list(emodes)
    admin = admin or chain.accounts[0]
    treasury = treasury or Web3.to_checksum_address("0x" + "7e" * 20)
    gas: dict[str, int] = {}
    secs: dict[str, float] = {}
    t_all = time.perf_counter()

    def step(name: str, t0: float, *rcpts: dict[str, Any]) -> None:
        secs[name] = secs.get(name, 0.0) + time.perf_counter() - t0
        gas[name] = gas.get(name, 0) + sum(receipt_gas(r) for r in rcpts)

    def deploy(name: str, *args: Any, libraries: dict[str, str] | None = None, label: str | None = None) -> Any:
        t0 = time.perf_counter()
        c = chain.deploy(load_artifact(name), *args, sender=admin, libraries=libraries)
        step(label or name, t0, c.deploy_receipt)
        return c

    def tx(label: str, fn: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        r = chain.transact(fn, admin)
        step(label, t0, r)
        return r

    def new_feed(answer: int, description: str) -> Any:
        if feed == "mock":
            return deploy("MockAggregator", answer, label="assets+feeds")
        return deploy("RoundFeed", 8, description, 1, answer, label="assets+feeds")

    provider = deploy("PoolAddressesProvider", market_id, admin)
    tx("provider.setACLAdmin", provider.functions.setACLAdmin(admin))
    acl = deploy("ACLManager", provider.address)
    tx("provider.setACLManager", provider.functions.setACLManager(acl.address))
    for fn in ("addPoolAdmin", "addRiskAdmin", "addEmergencyAdmin", "addAssetListingAdmin"):
        tx("acl.roles", getattr(acl.functions, fn)(admin))

    libs: dict[str, str] = {}
    for name in ("BorrowLogic", "BridgeLogic", "EModeLogic", "LiquidationLogic", "PoolLogic", "SupplyLogic"):
        libs[name] = deploy(name, label="libraries").address
    libs["FlashLoanLogic"] = deploy(
        "FlashLoanLogic", libraries={"BorrowLogic": libs["BorrowLogic"]}, label="libraries"
    ).address
    if set(load_artifact("Pool").library_names()) != set(POOL_LIBRARIES):
        raise RuntimeError(f"Pool links {load_artifact('Pool').library_names()}, expected {POOL_LIBRARIES}")

    pool_impl = deploy("Pool", provider.address, libraries=libs, label="Pool(impl)")
    tx("provider.setPoolImpl(proxy)", provider.functions.setPoolImpl(pool_impl.address))
    pool = chain.at(load_artifact("Pool"), chain.call(provider.functions.getPool()))

    libs["ConfiguratorLogic"] = deploy("ConfiguratorLogic", label="libraries").address
    conf_impl = deploy(
        "PoolConfigurator", libraries={"ConfiguratorLogic": libs["ConfiguratorLogic"]}, label="PoolConfigurator(impl)"
    )
    tx("provider.setPoolConfiguratorImpl(proxy)", provider.functions.setPoolConfiguratorImpl(conf_impl.address))
    configurator = chain.at(load_artifact("PoolConfigurator"), chain.call(provider.functions.getPoolConfigurator()))

    tokens, feeds = {}, {}
    for rp in reserves:
        tokens[rp.symbol] = deploy("MintableERC20", rp.symbol, rp.symbol, rp.decimals, label="assets+feeds")
        feeds[rp.symbol] = new_feed(usd_to_base(rp.price_usd), f"{rp.symbol} / USD")
    emode_feeds = {em.id: new_feed(usd_to_base(em.price_usd), em.label) for em in emodes if em.price_usd}
    emode_sources = {cat: _emode_source_address(cat) for cat in emode_feeds}

    oracle_assets = [tokens[r.symbol].address for r in reserves] + list(emode_sources.values())
    oracle_feeds = [feeds[r.symbol].address for r in reserves] + [f.address for f in emode_feeds.values()]
    oracle = deploy("AaveOracle", provider.address, oracle_assets, oracle_feeds, ZERO, ZERO, BASE_CURRENCY_UNIT)
    tx("provider.setPriceOracle", provider.functions.setPriceOracle(oracle.address))
    data_provider = deploy("AaveProtocolDataProvider", provider.address)
    tx("provider.setPoolDataProvider", provider.functions.setPoolDataProvider(data_provider.address))

    a_impl = deploy("AToken", pool.address, label="token impls")
    s_impl = deploy("StableDebtToken", pool.address, label="token impls")
    v_impl = deploy("VariableDebtToken", pool.address, label="token impls")

    strategies: dict[RateParams, Any] = {}
    for rp in reserves:
        if rp.rates not in strategies:
            strategies[rp.rates] = deploy(
                "DefaultReserveInterestRateStrategy", provider.address, *rp.rates.as_ray_args(), label="rate strategies"
            )

    inputs = [
        (
            a_impl.address,
            s_impl.address,
            v_impl.address,
            rp.decimals,
            strategies[rp.rates].address,
            tokens[rp.symbol].address,
            treasury,
            ZERO,
            f"Aave {rp.symbol}",
            f"a{rp.symbol}",
            f"Aave Variable Debt {rp.symbol}",
            f"variableDebt{rp.symbol}",
            f"Aave Stable Debt {rp.symbol}",
            f"stableDebt{rp.symbol}",
            b"",
        )
        for rp in reserves
    ]
    for i in range(0, len(inputs), INIT_RESERVES_CHUNK):
        tx("configurator.initReserves", configurator.functions.initReserves(inputs[i : i + INIT_RESERVES_CHUNK]))

    cf = configurator.functions
    for rp in reserves:
        a = tokens[rp.symbol].address
        tx("reserve config", cf.configureReserveAsCollateral(a, rp.ltv, rp.liquidation_threshold, rp.liquidation_bonus))
        if rp.borrowing_enabled:
            tx("reserve config", cf.setReserveBorrowing(a, True))
        tx("reserve config", cf.setReserveFactor(a, rp.reserve_factor))
        tx("reserve config", cf.setLiquidationProtocolFee(a, rp.protocol_fee))
        if rp.supply_cap:
            tx("reserve config", cf.setSupplyCap(a, rp.supply_cap))
        if rp.borrow_cap:
            tx("reserve config", cf.setBorrowCap(a, rp.borrow_cap))
        if rp.debt_ceiling_usd:
            tx("reserve config", cf.setDebtCeiling(a, int(Decimal(str(rp.debt_ceiling_usd)) * 100)))
        if rp.borrowable_in_isolation:
            tx("reserve config", cf.setBorrowableInIsolation(a, True))

    for em in emodes:
        source = emode_sources.get(em.id, ZERO)
        tx(
            "emode",
            cf.setEModeCategory(em.id, em.ltv, em.liquidation_threshold, em.liquidation_bonus, source, em.label),
        )
    for rp in reserves:
        if rp.emode_category:
            tx("emode", cf.setAssetEModeCategory(tokens[rp.symbol].address, rp.emode_category))

    a_art, s_art, v_art = (load_artifact(n) for n in ("AToken", "StableDebtToken", "VariableDebtToken"))
    out: dict[str, Reserve] = {}
    for rp in reserves:
        rd = chain.call(pool.functions.getReserveData(tokens[rp.symbol].address))
        out[rp.symbol] = Reserve(
            rp,
            tokens[rp.symbol],
            feeds[rp.symbol],
            strategies[rp.rates],
            chain.at(a_art, rd[8]),
            chain.at(v_art, rd[10]),
            chain.at(s_art, rd[9]),
            int(rd[7]),
        )
    secs["TOTAL"] = time.perf_counter() - t_all
    gas["TOTAL"] = sum(v for k, v in gas.items() if k != "TOTAL")
    return AaveMarket(
        chain,
        admin,
        treasury,
        provider,
        acl,
        pool,
        configurator,
        oracle,
        data_provider,
        libs,
        out,
        feed,
        emode_feeds,
        emode_sources,
        gas,
        secs,
    )
