"""The `evm` lending backend: the lending market's surface (`LendingMarket`) with Aave v3.0.2 on a local chain behind
it. Every supply, borrow, repayment and liquidation is a transaction on the node; the market's arrays mirror the
chain's scaled balances, indexes and collateral flags, and its views (health, values, previews) are the contract's
own integer arithmetic on that mirror (aave_math), checked against getUserAccountData (`check`).

Token flows still go through the run's ledger, with the amounts the chain moved (base units / 10**decimals), so value
conservation holds as in the model backend. Chain time follows the run's clock: the next transaction is stamped with
the run's time (evm_setNextBlockTimestamp; transactions inside a simulated block share its timestamp), so interest
accrues on chain exactly as if an empty block had been mined every simulated block (Aave's interest depends on
timestamps only); between transactions the indexes are the contract's formulas (ReserveLogic.getNormalized*) on the
reserve data read after the last transaction. Accounts are addresses derived from the market id and row; the node
impersonates them (no keys).

For small runs (hundreds of accounts): the benchmark (benchmarks/bench_evm.py) reports the cost per block.
"""

from __future__ import annotations

import numpy as np
from web3 import Web3

from defistress.protocols.base import Env, Revert
from defistress.protocols.events import Liquidated
from defistress.protocols.evm import aave_math as am
from defistress.protocols.evm.aave import MOCK_AGGREGATOR_ANSWER_SLOT, VARIABLE, AaveMarket
from defistress.protocols.ledger import InsufficientBalance
from defistress.protocols.lending import AssetParams, LendingMarket, Preview
from defistress.protocols.lending_accounts import EModeCategory

#: Aave v3.0.2 Errors.sol codes met by the backend, by name
AAVE_ERRORS = {
    "26": "INVALID_AMOUNT",
    "30": "BORROWING_NOT_ENABLED",
    "34": "COLLATERAL_BALANCE_IS_ZERO",
    "35": "HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD",
    "36": "COLLATERAL_CANNOT_COVER_NEW_BORROW",
    "43": "UNDERLYING_BALANCE_ZERO",
    "45": "HEALTH_FACTOR_NOT_BELOW_THRESHOLD",
    "46": "COLLATERAL_CANNOT_BE_LIQUIDATED",
    "47": "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER",
    "50": "BORROW_CAP_EXCEEDED",
    "51": "SUPPLY_CAP_EXCEEDED",
    "53": "DEBT_CEILING_EXCEEDED",
    "57": "LTV_VALIDATION_FAILED",
    "58": "INCONSISTENT_EMODE_CATEGORY",
    "60": "ASSET_NOT_BORROWABLE_IN_ISOLATION",
    "62": "USER_IN_ISOLATION_MODE_OR_LTV_ZERO",
}
UINT256_MAX = 2**256 - 1
HALF_RAY = am.RAY // 2
GAS_ETH = 10**24  # wei given to every sender (they pay gas on Anvil too)
#: collateral prices are multiplied by this while a genesis book borrows (Aave checks the LTV; a book only needs HF>1)
GENESIS_PRICE_FACTOR = 10


def derived_address(label: str) -> str:
    """A deterministic address for a simulated account or holder (no key: the node impersonates it)."""
    return Web3.to_checksum_address(Web3.keccak(text=f"defistress:{label}")[-20:])


def _wei(amounts: np.ndarray, unit: int) -> list[int]:
    """Token units -> base units, floored (never more than the model asked for)."""
    return [int(x) for x in np.floor(np.asarray(amounts, float) * float(unit))]


def _int_array(values: list[int], shape: tuple[int, ...]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.ravel()[:] = values
    return out


class EvmLendingMarket(LendingMarket):
    """A LendingMarket whose state lives in Aave v3.0.2 contracts on a node (`aave`, deployed with these assets)."""

    def __init__(
        self,
        protocol_id: str,
        assets: list[AssetParams],
        oracles: dict,
        env: Env,
        aave: AaveMarket,
        emodes: list[EModeCategory] | None = None,
        check_every: int = 0,
        gas_per_tx: int = 2_000_000,
    ):
        super().__init__(protocol_id, assets, oracles, env, "aave-v3.0", emodes, None, "aave-v3")
        missing = [s for s in self.assets if s not in aave.reserves]
        if missing:
            raise ValueError(f"{protocol_id}: the deployment lists no reserve for {missing}")
        self.aave, self.chain = aave, aave.chain
        self.reserves = [aave.reserves[s] for s in self.assets]
        n_a = len(self.assets)
        self.units = np.array([10 ** int(d) for d in self.decimals], dtype=object)
        self._a = np.zeros((0, n_a), dtype=object)  # aToken scaled balances, base units
        self._d = np.zeros((0, n_a), dtype=object)  # variable-debt scaled balances, base units
        self._inc = np.array([am.RAY] * n_a, dtype=object)  # normalized income, ray
        self._dbt = np.array([am.RAY] * n_a, dtype=object)  # normalized variable debt, ray
        self._written = [0] * n_a  # feed answers on chain, base units
        self._coll_on = np.zeros((0, n_a), dtype=bool)
        self.addresses: list[str] = []
        self._ready: set[str] = set()
        self._approved: set[tuple[str, int]] = set()
        self.check_every = check_every
        self.gas_per_tx = gas_per_tx
        self.stats = {"transactions": 0, "blocks": 0, "checks": 0, "accounts_checked": 0}
        gas_limit = int(self.chain.rpc.call("eth_getBlockByNumber", ["latest", False])["gasLimit"], 16)
        self.batch_size = max(1, min(1000, gas_limit // gas_per_tx))
        self.now = self.chain_time = self.chain.timestamp()  # seconds: the run's clock, the latest block's stamp
        c, pool = self.chain, aave.pool
        self._pool = {name: c.codec(pool, name) for name in ("supply", "borrow", "repay", "liquidationCall")}
        self._pool.update({name: c.codec(pool, name) for name in ("setUserEMode", "setUserUseReserveAsCollateral")})
        self._reads = {name: c.codec(pool, name) for name in ("getUserConfiguration", "getUserAccountData")}
        self._reads["reserve"] = c.codec(pool, "getReserveData")
        self._mint = [c.codec(r.token, "mint(address,uint256)") for r in self.reserves]
        self._approve = [c.codec(r.token, "approve") for r in self.reserves]
        self._a_scaled = [c.codec(r.a_token, "scaledBalanceOf") for r in self.reserves]
        self._d_scaled = [c.codec(r.variable_debt, "scaledBalanceOf") for r in self.reserves]
        self._sync_prices()
        self._read_reserves()

    # --- chain plumbing ----------------------------------------------------------------------------------------
    def holder_address(self, holder: str) -> str:
        return derived_address(f"holder:{holder}")

    def _fund(self, addresses: list[str]) -> None:
        new = [a for a in dict.fromkeys(addresses) if a not in self._ready]
        for k in range(0, len(new), 500):
            self.chain.rpc.batch([("anvil_setBalance", [a, hex(GAS_ETH)]) for a in new[k : k + 500]])
        self._ready.update(new)

    def _sync_prices(self, factors: np.ndarray | None = None) -> None:
        """Write the oracle prices (8 decimals) into the feeds that changed (storage writes: no transaction)."""
        answers = [int(round(x * 1e8)) for x in self.prices() * (1.0 if factors is None else factors)]
        for j, v in enumerate(answers):
            if v != self._written[j]:
                self.chain.set_storage(self.reserves[j].feed.address, MOCK_AGGREGATOR_ANSWER_SLOT, v)
                self._written[j] = v

    def _send(self, txs: list[dict[str, str]]) -> list[dict]:
        """Send transactions: one alone with eth_sendTransactionSync, many in blocks of `batch_size` (auto-mining off,
        one JSON-RPC batch, evm_mine). A failure raises Revert with Aave's error name."""
        self._fund([t["from"] for t in txs])
        self._clock_to_now()
        rcpts: list[dict] = []
        for k in range(0, len(txs), self.batch_size):
            part = txs[k : k + self.batch_size]
            if len(part) == 1:
                rcpts.append(self.chain.send_tx(part[0], check=False))
                continue
            self.chain.set_automine(False)
            try:
                rcpts += self.chain.send_many(part)
            finally:
                self.chain.set_automine(True)
        self.stats["transactions"] += len(txs)
        self._read_reserves()
        bad = [k for k, r in enumerate(rcpts) if r.get("status") != "0x1"]
        if bad:
            reason = self.chain._replay_reason(txs[bad[0]], rcpts[bad[0]]) or "reverted"
            raise Revert(f"{self.id}: {AAVE_ERRORS.get(reason, reason)} ({len(bad)} of {len(txs)} transactions failed)")
        return rcpts

    def _token_txs(self, addr: str, j: int, amount: int) -> list[dict[str, str]]:
        """Mint `amount` of asset j to `addr` and let the pool pull it (approval once per address and asset)."""
        txs = [self._mint[j].tx(addr, addr, amount, gas=200_000)]
        if (addr, j) not in self._approved:
            txs.append(self._approve[j].tx(addr, self.aave.pool.address, UINT256_MAX, gas=200_000))
            self._approved.add((addr, j))
        return txs

    def _batch_reads(self, calls: list) -> list:
        out: list = []
        for k in range(0, len(calls), 1000):
            out += self.chain.batch_call(calls[k : k + 1000])
        return out

    def _read_reserves(self) -> None:
        """Read every reserve's indexes, rates and last update (after transactions that may have changed them)."""
        self._reserve_data = [
            (int(d[1]), int(d[2]), int(d[3]), int(d[4]), int(d[6]))
            for d in self._batch_reads([self._reads["reserve"].prepared(r.address) for r in self.reserves])
        ]
        self._index_now()

    def _index_now(self) -> None:
        """The normalized income and debt of every reserve at the run's time (ReserveLogic.getNormalizedIncome /
        getNormalizedVariableDebt: what the contract itself computes in a transaction now)."""
        for j, (li, lr, bi, br, ts) in enumerate(self._reserve_data):
            self._inc[j] = am.normalized_income(li, lr, ts, self.now)
            self._dbt[j] = am.normalized_debt(bi, br, ts, self.now)
        self.liq_index = np.array([float(x) / 1e27 for x in self._inc])
        self.borrow_index = np.array([float(x) / 1e27 for x in self._dbt])
        self._version += 1

    def _clock_to_now(self, mine: bool = False) -> None:
        """Stamp the next block with the run's time (or mine an empty block at it)."""
        if self.now > self.chain_time:
            if mine:
                self.chain.mine_at(self.now)
                self.stats["blocks"] += 1
            else:
                self.chain.set_next_block_timestamp(self.now)
            self.chain_time = self.now

    def _refresh(self, rows) -> None:
        """Read the scaled balances and collateral flags of `rows` from the chain into the mirror."""
        rows = np.unique(np.atleast_1d(np.asarray(rows, dtype=np.int64)))
        n_a = len(self.assets)
        calls = []
        for r in rows:
            addr = self.addresses[r]
            calls += [c.prepared(addr) for c in self._a_scaled] + [c.prepared(addr) for c in self._d_scaled]
            calls.append(self._reads["getUserConfiguration"].prepared(addr))
        vals = self._batch_reads(calls)
        per = 2 * n_a + 1
        for k, r in enumerate(rows):
            v = vals[k * per : (k + 1) * per]
            self._a[r] = v[:n_a]
            self._d[r] = v[n_a : 2 * n_a]
            bits = v[2 * n_a][0]
            self._flags()[r] = [am.user_configuration_flags(bits, res.reserve_id)[1] for res in self.reserves]
        units = np.array([float(u) for u in self.units])
        self.coll_scaled[rows] = self._a[rows].astype(float) / units
        self.debt_scaled[rows] = self._d[rows].astype(float) / units
        self._touch()

    # --- views: the contract's arithmetic on the mirror ----------------------------------------------------
    def _exact(self) -> dict[str, np.ndarray]:
        """GenericLogic.calculateUserAccountData for every account, in integers: base-currency values, avg LT, HF."""
        n, n_a = self._a.shape
        pb = np.array([int(round(x * 1e8)) for x in self.prices()], dtype=object)
        cb = (self._a * self._inc + HALF_RAY) // am.RAY
        db = (self._d * self._dbt + HALF_RAY) // am.RAY
        lt = np.tile(np.array([int(x) for x in self.lt_bps], dtype=object), (n, 1))
        ltv = np.tile(np.array([int(x) for x in self.ltv_bps], dtype=object), (n, 1))
        for c, cat in self.emodes.items():
            rows = self.user_emode == c
            inside = self.asset_category == c
            if rows.any() and inside.any():
                sub = np.ix_(rows, inside)
                lt[sub], ltv[sub] = round(cat.liquidation_threshold * 1e4), round(cat.ltv * 1e4)
        counted = self.collateral_enabled & (lt > 0).astype(bool)
        v = np.where(counted, cb * pb // self.units, 0)
        dv = db * pb // self.units
        coll = v.sum(axis=1) if n_a else np.zeros(n, dtype=object)
        debt = dv.sum(axis=1) if n_a else np.zeros(n, dtype=object)
        safe = np.where(coll > 0, coll, 1)
        avg_lt = np.where(coll > 0, (v * lt).sum(axis=1) // safe, 0)
        avg_ltv = np.where(coll > 0, (v * ltv).sum(axis=1) // safe, 0)
        weighted = (coll * avg_lt + am.HALF_PERCENT) // am.PERCENTAGE_FACTOR
        cap = (coll * avg_ltv + am.HALF_PERCENT) // am.PERCENTAGE_FACTOR
        hf_wad = np.where(debt > 0, (weighted * am.WAD + debt // 2) // np.where(debt > 0, debt, 1), am.UINT256_MAX)
        return {"coll": coll, "debt": debt, "weighted": weighted, "cap": cap, "hf_wad": hf_wad, "avg_lt": avg_lt}

    def _account_values(self) -> dict[str, np.ndarray]:
        p = self.prices()
        key = (p.tobytes(), self._version)
        if key == self._cache_key:
            return self._cache
        e = self._exact()
        hf = np.array([np.inf if h == am.UINT256_MAX else h / 1e18 for h in e["hf_wad"]], dtype=float)
        # a decision on the float must be the chain's: HF < 1 exactly when the wad is below 1e18
        low = np.array([h < am.WAD for h in e["hf_wad"]], dtype=bool)
        hf[low & (hf >= 1.0)] = np.nextafter(1.0, 0.0)
        hf[~low & (hf < 1.0)] = 1.0
        self._hf_wad = e["hf_wad"]
        self._cache = {
            "coll_usd": e["coll"].astype(float) / 1e8,
            "debt_usd": e["debt"].astype(float) / 1e8,
            "weighted": e["weighted"].astype(float) / 1e8,
            "hf": hf,
            "borrow_cap": e["cap"].astype(float) / 1e8,
        }
        self._cache_key = key
        self._pending_rows = None
        self._coll_gen += 1  # collateral values written: `metrics` must not keep its collateral sum
        return self._cache

    def check(self) -> int:
        """Compare the mirror's account data with getUserAccountData of every account; raises on any difference.
        Returns the number of accounts checked."""
        self._sync_prices()
        self._clock_to_now(mine=True)
        e = self._exact()
        got = self._batch_reads([self._reads["getUserAccountData"].prepared(a) for a in self.addresses])
        for r, g in enumerate(got):
            want = (e["coll"][r], e["debt"][r], e["avg_lt"][r] if e["coll"][r] else 0, e["hf_wad"][r])
            if (g[0], g[1], g[3], g[5]) != want:
                raise RuntimeError(
                    f"{self.id}: account #{r} ({self.addresses[r]}) on chain {(g[0], g[1], g[3], g[5])} differs from "
                    f"the mirror {want}"
                )
        self.stats["checks"] += 1
        self.stats["accounts_checked"] += len(got)
        return len(got)

    # --- time ------------------------------------------------------------------------------------------------
    def accrue(self, dt_seconds: float) -> None:
        """The run's clock moves on: the next transaction is stamped `dt_seconds` later, and interest accrues."""
        self.now += int(round(dt_seconds))
        self._index_now()
        if self.check_every and (self.env.clock.block + 1) % self.check_every == 0:
            self.check()

    # --- accounts and their actions ---------------------------------------------------------------------------
    def add_accounts(self, n: int) -> np.ndarray:
        rows = super().add_accounts(n)
        n_a = len(self.assets)
        self._a = np.vstack([self._a, np.zeros((n, n_a), dtype=object)])
        self._d = np.vstack([self._d, np.zeros((n, n_a), dtype=object)])
        self._flags()[rows] = False  # the chain's flags: nothing supplied yet
        self.addresses += [derived_address(f"{self.id}#{r}") for r in rows]
        return rows

    def supply_liquidity(self, holder: str, asset: str, amount: float) -> None:
        j = self.idx[asset]
        self._check_supply_cap(j, float(amount))
        addr = self.holder_address(holder)
        (wei,) = _wei(np.array([amount]), self.units[j])
        self._send(
            self._token_txs(addr, j, wei)
            + [self._pool["supply"].tx(addr, self.reserves[j].address, wei, addr, 0, gas=self.gas_per_tx)]
        )
        self.env.ledger.transfer(asset, holder, self.id, wei / self.units[j])
        self.lender_scaled[j] = self._batch_reads([self._a_scaled[j].prepared(addr)])[0] / float(self.units[j])

    def supply(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> None:
        j = self.idx[asset]
        accounts = np.atleast_1d(np.asarray(accounts))
        amounts = np.broadcast_to(np.asarray(amounts, float), accounts.shape)
        self._check_supply_cap(j, float(amounts.sum()))
        wei = _wei(amounts, self.units[j])
        txs = []
        for r, w in zip(accounts, wei):
            if w > 0:
                addr = self.addresses[r]
                txs += self._token_txs(addr, j, w)
                txs.append(self._pool["supply"].tx(addr, self.reserves[j].address, w, addr, 0, gas=self.gas_per_tx))
        self._sync_prices()
        self._send(txs)
        self.env.ledger.transfer(asset, holder, self.id, sum(wei) / self.units[j])
        self._refresh(accounts)

    def _borrow(self, holder, accounts, asset, amounts, check_ltv):
        j = self.idx[asset]
        accounts = np.atleast_1d(np.asarray(accounts))
        amounts = np.broadcast_to(np.asarray(amounts, float), accounts.shape)
        v = self._account_values()
        if not check_ltv:  # the model's genesis rule: a seeded book only needs HF > 1 (the chain checks the LTV)
            bad = v["debt_usd"][accounts] + amounts * self.prices()[j] > v["weighted"][accounts] * (1 + 1e-12)
            if np.any(bad):
                raise Revert(
                    f"{self.id}: borrow would exceed health factor 1 for {int(bad.sum())} account(s), "
                    f"e.g. #{int(accounts[bad][0])}"
                )
        wei = _wei(amounts, self.units[j])
        txs = [
            self._pool["borrow"].tx(
                self.addresses[r], self.reserves[j].address, w, VARIABLE, 0, self.addresses[r], gas=self.gas_per_tx
            )
            for r, w in zip(accounts, wei)
            if w > 0
        ]
        if self.env.ledger.balance(self.id, asset) < sum(wei) / self.units[j]:
            raise Revert(f"{self.id}: not enough {asset} liquidity to lend {sum(wei) / self.units[j]:.6g}")
        if check_ltv:
            self._sync_prices()
            self._send(txs)
        else:
            self._with_genesis_prices(j, lambda: self._send(txs))
        self.env.ledger.transfer(asset, self.id, holder, sum(wei) / self.units[j])
        self._refresh(accounts)

    def _with_genesis_prices(self, borrowed: int, action) -> None:
        """Run `action` with every other asset priced GENESIS_PRICE_FACTOR times higher: the chain then accepts
        borrows that the model's genesis rule (HF > 1, not the LTV) accepts; the prices are restored after."""
        factors = np.full(len(self.assets), float(GENESIS_PRICE_FACTOR))
        factors[borrowed] = 1.0
        self._sync_prices(factors)
        try:
            action()
        finally:
            self._sync_prices()

    def repay(self, holder: str, accounts: np.ndarray, asset: str, amounts: np.ndarray) -> np.ndarray:
        j = self.idx[asset]
        accounts = np.atleast_1d(np.asarray(accounts))
        amounts = np.broadcast_to(np.asarray(amounts, float), accounts.shape)
        owed = (self._d[accounts, j] * self._dbt[j] + HALF_RAY) // am.RAY
        wei = [min(w, int(o)) for w, o in zip(_wei(amounts, self.units[j]), owed)]
        txs = []
        for r, w in zip(accounts, wei):
            if w > 0:
                addr = self.addresses[r]
                txs += self._token_txs(addr, j, w)
                txs.append(
                    self._pool["repay"].tx(addr, self.reserves[j].address, w, VARIABLE, addr, gas=self.gas_per_tx)
                )
        paid = np.array([w / self.units[j] for w in wei], dtype=float)
        self.env.ledger.transfer(asset, holder, self.id, sum(wei) / self.units[j])
        self._sync_prices()
        self._send(txs)
        self._refresh(accounts)
        return paid

    def set_collateral(self, accounts: np.ndarray, asset: str, on: bool) -> None:
        j = self.idx[asset]
        accounts = np.atleast_1d(np.asarray(accounts))
        fn = self._pool["setUserUseReserveAsCollateral"]
        self._sync_prices()
        self._send(
            [fn.tx(self.addresses[r], self.reserves[j].address, bool(on), gas=self.gas_per_tx) for r in accounts]
        )
        self._refresh(accounts)

    def set_emode(self, accounts: np.ndarray, category: int) -> None:
        accounts = np.atleast_1d(np.asarray(accounts))
        self._sync_prices()
        self._send(
            [self._pool["setUserEMode"].tx(self.addresses[r], int(category), gas=self.gas_per_tx) for r in accounts]
        )
        if self._emode is None:
            self._emode = np.zeros(self.n_accounts, dtype=np.int64)
        self._grow_flags()
        self._emode[accounts] = int(category)
        self._touch()

    def genesis_positions(self, holder, accounts, collateral, debt, enabled=None, emode=None) -> None:
        """An imported book placed by transactions: supplies, e-mode, collateral switches, then the borrows (at
        genesis prices, as the model places a book without an LTV check)."""
        accounts = np.asarray(accounts)
        collateral, debt = np.asarray(collateral, float), np.asarray(debt, float)
        for j, a in enumerate(self.assets):
            if collateral[:, j].sum() > 0:
                self.supply(holder, accounts, a, collateral[:, j])
        if emode is not None:
            for c in sorted(set(np.unique(emode).tolist()) - {0}):
                self.set_emode(accounts[np.asarray(emode) == c], c)
        if enabled is not None:
            want = np.asarray(enabled, bool)
            for j, a in enumerate(self.assets):
                for on in (True, False):
                    rows = accounts[(want[:, j] == on) & (self._flags()[accounts, j] != on) & (collateral[:, j] > 0)]
                    if rows.size:
                        self.set_collateral(rows, a, on)
        self._book_borrows(holder, accounts, debt)

    def _book_borrows(self, holder: str, accounts: np.ndarray, debt: np.ndarray) -> None:
        """Borrow a book's debts whatever its health: accounts that hold the same collateral and debt assets borrow
        together, with the prices of their collateral-only assets raised GENESIS_PRICE_FACTOR times (the chain
        checks HF and LTV at borrowing; a book is placed as it is). The prices are restored after."""
        n_a = len(self.assets)
        held = (self._a[accounts] > 0) & self._flags()[accounts]
        owes = debt > 0
        bits = 1 << np.arange(n_a)
        groups = np.unique(((held @ bits) << n_a) + (owes @ bits), return_inverse=True)[1].ravel()
        total = np.zeros(n_a, dtype=object)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            factors = np.where(held[rows[0]] & ~owes[rows[0]], float(GENESIS_PRICE_FACTOR), 1.0)
            txs = []
            for j in np.flatnonzero(owes[rows[0]]):
                wei = _wei(debt[rows, j], self.units[j])
                total[j] += sum(wei)
                txs += [
                    self._pool["borrow"].tx(
                        self.addresses[r],
                        self.reserves[j].address,
                        w,
                        VARIABLE,
                        0,
                        self.addresses[r],
                        gas=self.gas_per_tx,
                    )
                    for r, w in zip(accounts[rows], wei)
                    if w > 0
                ]
            self._sync_prices(factors)
            try:
                self._send(txs)
            finally:
                self._sync_prices()
        for k, a in enumerate(self.assets):
            if total[k] > 0:
                self.env.ledger.transfer(a, self.id, holder, total[k] / self.units[k])
        self._refresh(accounts)

    # --- liquidation ---------------------------------------------------------------------------------------
    def _bonus_bps(self, account: int, i: int) -> int:
        c = int(self.user_emode[account]) if self._emode is not None else 0
        if c and self.asset_category[i] == c:
            return round((1.0 + self.emodes[c].liquidation_bonus) * 1e4)
        return round(float(self.bonus[i]) * 1e4)

    def max_debt_to_cover(self, account: int, debt_asset: str, collateral_asset: str | None = None) -> float:
        j = self.idx[debt_asset]
        self._account_values()
        debt = (self._d[account, j] * self._dbt[j] + HALF_RAY) // am.RAY
        return am.percent_mul(int(debt), am.close_factor(int(self._hf_wad[account]))) / float(self.units[j])

    def _liquidation_amounts(self, account: int, i: int, j: int, debt_to_cover: float) -> tuple[int, int, int, int]:
        """(debtToCover to send, debt repaid, collateral to the liquidator, protocol fee), base units, as the contract
        computes them (LiquidationLogic._calculateDebt and _calculateAvailableCollateralToLiquidate). A request for
        at least what the contract would take anyway is sent as type(uint256).max ("as much as allowed"), so a
        float request one base unit short never leaves dust behind."""
        self._account_values()
        debt = int((self._d[account, j] * self._dbt[j] + HALF_RAY) // am.RAY)
        coll = int((self._a[account, i] * self._inc[i] + HALF_RAY) // am.RAY)
        hf_wad = int(self._hf_wad[account])
        pb = [int(round(x * 1e8)) for x in self.prices()]
        bonus, fee_bps = self._bonus_bps(account, i), round(float(self.fee[i]) * 1e4)
        dec_i, dec_j = int(self.decimals[i]), int(self.decimals[j])

        def amounts(cover: int) -> tuple[int, int, int]:
            actual = am.actual_debt_to_liquidate(debt, hf_wad, cover)
            out, repaid, fee = am.available_collateral_to_liquidate(
                actual, pb[j], dec_j, pb[i], dec_i, coll, bonus, fee_bps
            )
            return repaid, out, fee

        full = amounts(UINT256_MAX)
        want = debt_to_cover * float(self.units[j])
        if not np.isfinite(want) or want >= full[0] * (1 - 1e-9):
            return (UINT256_MAX, *full)
        cover = int(want)
        return (cover, *amounts(cover))

    def preview(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float) -> Preview:
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        _, repaid, out, fee = self._liquidation_amounts(account, i, j, debt_to_cover)
        p = self.prices()
        d, c, f = repaid / float(self.units[j]), out / float(self.units[i]), fee / float(self.units[i])
        return Preview(d, c, f, d * p[j], c * p[i])

    def liquidate(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, liquidator: str
    ) -> Liquidated:
        """liquidationCall on chain (receiveAToken false); the ledger moves what the chain's events say."""
        if collateral_asset not in self.idx or debt_asset not in self.idx:
            raise Revert(f"{self.id}: unknown asset pair {collateral_asset}/{debt_asset}; allowed: {self.assets}")
        if not 0 <= account < self.n_accounts:
            raise Revert(f"{self.id}: no account #{account}")
        self._revert_if_controlled(account)
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        hf = float(self.health()[account])
        cover, repaid, out, fee = self._liquidation_amounts(account, i, j, debt_to_cover)
        led = self.env.ledger
        if hf < 1.0 and led.balance(liquidator, debt_asset) < repaid / float(self.units[j]) * (1 - 1e-12):
            raise Revert(f"liquidator cannot pay: {liquidator} holds too little {debt_asset}")
        liq = self.holder_address(liquidator)
        user = self.addresses[account]
        fn = self._pool["liquidationCall"]
        tx = fn.tx(liq, self.reserves[i].address, self.reserves[j].address, user, cover, False, gas=self.gas_per_tx)
        self._sync_prices()
        # the liquidator's cash on chain: what the contract will pull, plus a hair (the ledger moves the exact amount)
        self._send(self._token_txs(liq, j, repaid + repaid // 10**6 + 1))
        (rcpt,) = self._send([tx])  # alone in its block: a revert's reason is replayed on the right state
        (ev,) = self.chain.events(self.aave.pool.events.LiquidationCall, rcpt)
        paid, seized = int(ev["args"]["debtToCover"]), int(ev["args"]["liquidatedCollateralAmount"])
        to_treasury = [
            int(t["args"]["value"])
            for t in self.chain.events(self.reserves[i].a_token.events.Transfer, rcpt)
            if t["args"]["from"] == user and t["args"]["to"] == self.aave.treasury
        ]
        fee_paid = sum(to_treasury)
        ui, uj = float(self.units[i]), float(self.units[j])
        try:
            led.transfer(debt_asset, liquidator, self.id, paid / uj)
        except InsufficientBalance as exc:  # pragma: no cover - checked before sending
            raise Revert(f"liquidator cannot pay: {exc}") from None
        led.transfer(collateral_asset, self.id, liquidator, seized / ui)
        led.transfer(collateral_asset, self.id, self.treasury, fee_paid / ui)
        self._refresh([account])
        p = self.prices()
        self.liquidated_debt_usd += paid / uj * p[j]
        self._last_collateral = i
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                int(account),
                liquidator,
                debt_asset,
                collateral_asset,
                paid / uj,
                seized / ui,
                fee_paid / ui,
                paid / uj * p[j],
                seized / ui * p[i],
                (seized + fee_paid) / ui * p[i] - paid / uj * p[j],
                hf,
            )
        )

    # --- not on this backend ------------------------------------------------------------------------------------
    def controller_close(self, *args, **kwargs):
        raise Revert(f"{self.id}: controller liquidations are not supported by the evm backend")

    def settle_out(self, *args, **kwargs) -> float:
        raise Revert(f"{self.id}: settle_out is not supported by the evm backend")

    def settle_in(self, *args, **kwargs) -> float:
        raise Revert(f"{self.id}: settle_in is not supported by the evm backend")

    def write_off(self, account: int) -> float:
        raise Revert(f"{self.id}: Aave v3.0.2 has no write-off of bad debt (the debt stays on the account)")


def open_book(
    aave: AaveMarket,
    collateral: np.ndarray,
    debt: np.ndarray,
    enabled: np.ndarray | None = None,
    emode: np.ndarray | None = None,
    emodes: list[EModeCategory] | None = None,
    label: str = "book",
) -> tuple[list[str], EvmLendingMarket]:
    """Open accounts on a deployed Aave as they are given (token units, (n, A) in the deployment's reserve order;
    which collateral counts; e-mode categories): supplies, switches and borrows in batched transactions, the borrows
    at genesis prices so that accounts below HF 1 can be opened too. Returns the accounts' addresses and the market
    that opened them (its mirror checked against the chain)."""
    from defistress.protocols.base import FixedPrice
    from defistress.protocols.evm.aave import model_assets

    params = [r.params for r in aave.reserves.values()]
    assets = model_assets(params)
    oracles = {r.symbol: FixedPrice(aave.price(r.symbol) / 1e8, r.symbol) for r in params}
    env = Env()
    m = EvmLendingMarket(label, assets, oracles, env, aave, emodes)
    n = collateral.shape[0]
    rows = m.add_accounts(n)
    for j, s in enumerate(m.assets):
        need = float(debt[:, j].sum())
        env.ledger.mint(s, label, float(collateral[:, j].sum()) + 1.0, "genesis")
        if need > 0:
            env.ledger.mint(s, "lenders", 2 * need + 1.0, "genesis")
            m.supply_liquidity("lenders", s, 2 * need + 1.0)
    m.genesis_positions(label, rows, collateral, debt, enabled, emode)
    m.check()
    return [m.addresses[r] for r in rows], m
