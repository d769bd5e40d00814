"""A vectorised population of borrowers on a lending market: one agent owning thousands of accounts.

At set-up it draws each account's size (collateral USD), collateral asset and health factor, deposits
and borrows through the protocol (tokens minted to the population's wallet first, so the ledger sees
every movement). Each block, attentive accounts whose health factor has been below their personal
alarm level for at least the reaction delay repay debt from their spare stablecoins to restore their
original health factor; they act in batched transactions that compete for block space like any other.
"""

from __future__ import annotations

from functools import partial

import mesa
import numpy as np

from defistress.agents.borrowers_span import alarm_span
from defistress.agents.mask_rows import MaskRows
from defistress.agents.tx import BlockView, Tx
from defistress.protocols.events import UserAction

#: `submit` tests at least this many alarmed rows for readiness before the rest (rows)
_READY_HEAD = 1024


class BorrowerPopulation(mesa.Agent):
    """Accounts on one `LendingMarket`; decisions for all of them are array operations.

    `accounts` (market rows), `attentive` and `alarm` (health factor) are read-only arrays: `submit` keeps the attentive
    rows' market rows and alarm levels between blocks, so to change them assign new arrays."""

    def __init__(
        self,
        model: mesa.Model,
        spec,
        market,
        rng: np.random.Generator,
        block_seconds: float,
        ensure_liquidity=None,
        fund=None,
    ):
        super().__init__(model)
        self.spec = spec
        self.market = market
        self.holder = spec.id
        self.debt_asset = spec.debt
        n = spec.accounts
        ledger = market.env.ledger
        prices = dict(zip(market.assets, market.prices()))

        size_usd = spec.size_usd.draw(rng, n)
        names = list(spec.collateral)
        choice = rng.choice(len(names), size=n, p=np.array([spec.collateral[a] for a in names]))
        hf = spec.health_factor.draw(rng, n)
        self.accounts = market.add_accounts(n)
        self.accounts.flags.writeable = False  # `submit` keeps the attentive rows' market rows (below)
        lt = np.array([market.lt[market.idx[names[c]]] for c in range(len(names))])[choice]
        for c, asset in enumerate(names):
            mask = choice == c
            if not mask.any():
                continue
            amounts = size_usd[mask] / prices[asset]
            if fund is not None:  # the model decides where genesis tokens come from
                fund(asset, self.holder, float(amounts.sum()))
            else:
                ledger.mint(asset, self.holder, float(amounts.sum()), "genesis_collateral")
            market.supply(self.holder, self.accounts[mask], asset, amounts)
        debt_tokens = size_usd * lt / hf / prices[self.debt_asset]
        if ensure_liquidity is not None:  # lenders must hold what the book borrows
            ensure_liquidity(self.debt_asset, float(debt_tokens.sum()))
        market.seed_borrow(self.holder, self.accounts, self.debt_asset, debt_tokens)
        # borrowed tokens were spent by the borrowers: they leave the population's wallet
        ledger.transfer(self.debt_asset, self.holder, f"{self.holder}:spent", float(debt_tokens.sum()))
        self.wallet = debt_tokens * spec.wallet_share
        ledger.mint(self.debt_asset, self.holder, float(self.wallet.sum()), "genesis_wallet")
        ledger.mint("ETH", self.holder, spec.gas_eth_per_account * n, "genesis_gas")

        self.target_hf = hf
        self.attentive = rng.random(n) < spec.attentive_share
        self.alarm = spec.alarm_health_factor.draw(rng, n)
        # read-only: `submit` keeps the attentive rows and their alarm levels until either array is replaced
        self.attentive.flags.writeable = False
        self.alarm.flags.writeable = False
        self.delay_blocks = int(np.ceil(spec.reaction_delay / block_seconds))
        self.below_since = np.full(n, -1, dtype=np.int64)
        self.repaid_total = 0.0
        self._watch = np.zeros(0, dtype=np.int64)  # local rows whose below_since may be >= 0
        self._held: np.ndarray | None = None  # `below_since` as the last look left it, read-only (`_hold`)
        self._resets: list[np.ndarray] = []  # local rows `_reset` since the last look
        self._watch_set = False  # every watched row's below_since is >= 0 (the last look's block was)

    def submit(self, view: BlockView) -> list[Tx]:
        """Batched repayments of attentive accounts that waited out their reaction delay."""
        # the attentive rows alone are read (a third of the book by default): local rows, their market rows and
        # alarm levels (contiguous: one gather a block, of the health factors), kept until `attentive`, `alarm` or
        # `accounts` is replaced or made writeable (they are read-only, so none can change in place unnoticed)
        att = self.__dict__.get("_attentive_rows")
        if (
            att is None
            or att[0] is not self.attentive
            or att[1] is not self.alarm
            or att[2] is not self.accounts
            or self.attentive.flags.writeable
            or self.alarm.flags.writeable
            or self.accounts.flags.writeable
        ):
            local = np.flatnonzero(self.attentive)
            local.flags.writeable = False  # strictly increasing and kept: `MaskRows` updates its selection
            att = (self.attentive, self.alarm, self.accounts, local, self.accounts[local], self.alarm[local])
            att += alarm_span(self.attentive, self.alarm, self.accounts)
            self._attentive_rows = att
            # a fresh selection: the last look's rows were of other attentive rows or levels (the slice's mask has
            # no base whose identity would tell), so nothing is carried and the watched rows are re-tested below
            self._alarmed_rows = MaskRows()
        local, rows, alarm, span_start, alarm_all = att[3:]
        if not local.size:
            return []
        hf = self.market.health()
        # `local[hf[rows] < alarm]`, updated from the last look where the mask flipped (the compaction of a random
        # mask over tens of thousands of rows cost more than the rest of the scan): agents.mask_rows
        sel = self.__dict__.get("_alarmed_rows")
        if sel is None:
            sel = self._alarmed_rows = MaskRows()
        last = sel.rows
        n = alarm_all.size
        if span_start >= 0 and hf.ndim == 1 and hf.dtype == np.float64 and span_start + n <= hf.size:
            # the population's rows are one slice of the book: the same positions from a comparison over the slice,
            # no gather (agents.borrowers_span; issue 14: the gather of 30,000 attentive rows cost more)
            alarmed = sel.select(hf[span_start : span_start + n] < alarm_all)
        else:  # `take`: the values `hf[rows]` gathers (a new array), about 1.5x faster on 30,000 rows (issue 14)
            alarmed = sel.select(hf.take(rows) < alarm, local)
        # only rows alarmed at the last look can have recovered: below_since is read and written at those rows
        # alone (masked writes over 100k rows every block were the cost); when the very rows of the last look are
        # alarmed again (most blocks) none has recovered: each is below its alarm level now
        bs, watch = self.below_since, self._watch
        same = alarmed is watch or (
            alarmed.dtype == watch.dtype and alarmed.size == watch.size and alarmed.tobytes() == watch.tobytes()
        )
        resets: list[np.ndarray] = self.__dict__.get("_resets") or []
        # the rows that can be fresh (below_since < 0) when every write since the last look is known: the rows that
        # joined the watched ones, and the rows `_reset` since (every other watched row holds a block >= 0, every
        # row outside them -1); None: unknown, every alarmed row is read
        noted = None
        if bs is self.__dict__.get("_held") and not bs.flags.writeable:
            if self._watch_set and same:
                noted = alarmed[:0]
            elif self._watch_set and last is watch and sel.delta is not None:
                noted = sel.delta[2]
            bs.flags.writeable = True  # this look's own writes (below); read-only again at its end (`_hold`)
        if watch.size and not same:  # watched rows are attentive ones
            if last is watch and sel.removed is not None:  # the rows of the last look whose entry turned False
                bs[sel.removed] = -1
            else:
                bs[watch[~(hf.take(self.accounts.take(watch)) < self.alarm.take(watch))]] = -1
        first = None
        if noted is not None:  # issue 14: no gather of every alarmed row's block (14,000 rows at 100k accounts)
            if resets:  # the reset rows still alarmed (`alarmed` is strictly increasing)
                r = np.concatenate(resets)
                at = np.searchsorted(alarmed, r).clip(max=max(alarmed.size - 1, 0))
                noted = np.concatenate([noted, r[alarmed[at] == r]]) if alarmed.size else noted
            new = noted[bs.take(noted) < 0]
            if new.size:
                bs[new] = view.block
        else:
            first = bs.take(alarmed)  # `bs[alarmed]`, a new array
            fresh = first < 0
            if np.count_nonzero(fresh):  # newly alarmed, or reset by a repayment (`_repay`); cheaper than .any() here
                first[fresh] = view.block
                bs[alarmed[fresh]] = view.block
        self._hold(bs, view.block)
        self._watch = alarmed
        # `alarmed[(view.block - first >= delay) & (wallet[alarmed] > 0)][:limit]`: the test is elementwise, so it
        # is applied to a leading slice first, and to the rest only if fewer than `limit` rows of it pass (in a crash
        # most alarmed rows are ready and the limit binds). On integer blocks `block - first >= delay` is
        # `first <= block - delay` (one array operation fewer). `first` is `bs[alarmed]` now (the blocks just written
        # included), read where needed if not gathered above
        limit = self.spec.max_users_per_block
        head = max(4 * limit, _READY_HEAD)
        if alarmed.size <= 2 * head:  # a short list: one pass
            head = alarmed.size
        latest = view.block - self.delay_blocks  # the latest first-alarmed block of a ready row
        a = alarmed[:head]
        ready = a[((first[:head] if first is not None else bs.take(a)) <= latest) & (self.wallet[a] > 0)]
        if ready.size < limit and alarmed.size > head:
            a = alarmed[head:]
            rest = a[((first[head:] if first is not None else bs.take(a)) <= latest) & (self.wallet[a] > 0)]
            ready = np.concatenate([ready, rest])
        ready = ready[:limit]
        if ready.size == 0:
            return []
        txs = []
        for start in range(0, ready.size, self.spec.users_per_tx):
            chunk = ready[start : start + self.spec.users_per_tx]
            txs.append(
                Tx(
                    self.holder,
                    partial(self._repay, chunk),
                    self.spec.repay_gas * chunk.size,
                    self.spec.priority_fee_gwei,
                    "repay",
                )
            )
        return txs

    def _repay(self, local: np.ndarray) -> None:
        """Repay enough debt to restore each account's original health factor, within its wallet."""
        m = self.market
        j = m.idx[self.debt_asset]
        price = m.prices()[j]
        _, debt_usd = m.account_usd()
        acc = self.accounts[local]
        weighted = m.weighted_collateral_usd()[acc]
        wanted_usd = np.maximum(debt_usd[acc] - weighted / self.target_hf[local], 0.0)
        amounts = np.minimum(wanted_usd / price, self.wallet[local])
        keep = amounts > 0
        if not keep.any():
            return
        paid = m.repay(self.holder, acc[keep], self.debt_asset, amounts[keep])
        self.wallet[local[keep]] -= paid
        self._reset(local[keep])
        self.repaid_total += float(paid.sum())
        m.env.emit(
            UserAction(m.env.clock.block, self.holder, "repay", int(keep.sum()), self.debt_asset, float(paid.sum()))
        )

    def _reset(self, local: np.ndarray) -> None:
        """`below_since` back to -1 at these local rows (a repayment restarts their wait), noted for the next look.
        `below_since` is read-only between looks, so every write to it is either this or replacing the array (or
        making it writeable), which the next look notices: it then reads every alarmed row's block."""
        bs = self.below_since
        if bs is not self.__dict__.get("_held") or bs.flags.writeable:
            bs[local] = -1
            return
        bs.flags.writeable = True
        bs[local] = -1
        rows = np.asarray(local)
        if rows.dtype == np.int64 and rows.ndim == 1 and (not rows.size or rows.min() >= 0):
            bs.flags.writeable = False
            self._resets.append(rows)
        else:  # rows the next look could not match against its alarmed rows: left writeable, it reads them all
            self._held = None

    def _hold(self, bs: np.ndarray, block: int) -> None:
        """At the end of a look: `bs` (`below_since`) made read-only and held, so that the next look knows every write
        made since (`_reset`), if it owns its data (else its flag cannot be set back: nothing held). Every alarmed row
        now holds a block, >= 0 unless the block is negative (`_watch_set`)."""
        self._held = None
        if bs.flags.owndata and bs.ndim == 1 and bs.dtype == np.int64:
            bs.flags.writeable = False
            self._held = bs
        self._resets = []
        self._watch_set = block >= 0

    def health(self) -> np.ndarray:
        return self.market.health()[self.accounts]
