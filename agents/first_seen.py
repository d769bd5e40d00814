"""The block each unhealthy account of a market was first seen unhealthy, shared by the liquidators whose looks agree.

A liquidator acts on an account once it has been unhealthy for its latency (blocks). Its bookkeeping is a look per
block: rows unhealthy at the last look that are healthy now are forgotten (-1), rows unhealthy now and not yet seen
get this block. The state after a look is a function of the state before it and of the look (the block, the health
factors, the unhealthy rows), so liquidators that started from nothing and looked at the same things hold the same
state: they share one `FirstSeenChain` instead of each keeping and updating its own (n,) array every block (issue 14:
three liquidators did the same gathers and writes over the unhealthy rows every block).

Every holder of a chain is at its current version or one behind. The first holder to look in a block advances the
chain in place and keeps an undo of the rows it wrote; a holder one behind that makes the same look (the same block,
the same market state and the very candidate rows the block's memo gave) takes the new version as it is; any other
look forks a private copy (rebuilt with the undo if one behind) and advances that, so a holder never sees a state it
did not compute. A holder advances in place only when nobody is behind (else it forks), which keeps the invariant.
"""

from __future__ import annotations

import numpy as np

#: key of the chains started in a block in `BlockView.extra` (fresh liquidators of the block join them)
_NEW = "first-seen-new"


class FirstSeenChain:
    """One state of the first-seen bookkeeping of a market and the look that made it, shared by its holders."""

    __slots__ = (
        "seen",
        "watch",
        "prev_watch",
        "version",
        "undo",
        "look",
        "rows",
        "first",
        "first_ok",
        "ready",
        "at",
        "behind",
        "block",
        "first_hi",
        "lazy",
    )
    seen: np.ndarray  # (n,) block each row was first seen unhealthy (in its current unhealthy spell), or -1
    watch: np.ndarray | None  # rows unhealthy at the look that made `version` (only they can recover)
    prev_watch: np.ndarray | None  # the same at version - 1
    version: int
    undo: tuple[np.ndarray, np.ndarray] | None  # (rows, values) restoring version - 1's `seen`
    look: tuple | None  # (block, market cache key) of the look that made `version`; None: not shareable
    rows: np.ndarray | None  # the candidate rows of that look (compared by identity)
    first: np.ndarray | None  # first-seen block of `rows` after that look (read-only)
    first_ok: bool  # every entry of `first` is >= 0 (a block)
    ready: dict[int, np.ndarray]  # latency (blocks) -> `rows` seen for at least that long, of that look
    at: int  # holders at `version`
    behind: int  # holders at version - 1
    block: int | None  # the block of the look that made `version` (every entry of `ready` is of that block)
    first_hi: int | None  # an upper bound of `first`'s entries (blocks), or None: not known yet
    lazy: bool  # `first` is None but known: it is `seen.take(rows)` (see `_first`)

    def __init__(self, n: int) -> None:
        self.seen = np.full(n, -1, dtype=np.int64)
        self.watch = self.prev_watch = None
        self.version, self.undo, self.look, self.rows, self.first, self.first_ok = 0, None, None, None, None, False
        self.ready = {}
        self.at, self.behind = 1, 0
        self.block = self.first_hi = None
        self.lazy = False

    def _advance(self, hf: np.ndarray, rows: np.ndarray, block: int, look: tuple | None, delta=None) -> None:
        """The look, in place: the state's version + 1, with the undo of what it wrote. `rows` are unhealthy
        (`hf` < 1 at each); `delta`, if given, says how `rows`, every row with `hf` < 1, differ from some earlier
        rows (`MaskRows.delta`: those rows, the values dropped, the values added)."""
        seen, watch = self.seen, self.watch
        if (
            watch is not None
            and watch is self.rows
            and (self.first is not None or self.lazy)
            and self.first_ok
            and rows.dtype == watch.dtype
            and rows.size == watch.size
            and rows.tobytes() == watch.tobytes()
        ):
            # the very rows of the last look (most blocks): none recovered (each is unhealthy now) and none is new
            # (the last look gave each a block >= 0), so nothing is written and their first-seen blocks are the last
            # look's `first`
            self.undo = (rows[:0], seen[:0])
            self.prev_watch, self.watch = watch, rows
            self.version += 1
            # a latency for which every row was ready at the last look (block b) has every row ready now:
            # block - first >= b - first >= latency; that ready array holds the very values of `rows`
            last, ready = self.block, self.ready
            keep = last is not None and block >= last
            self.ready = {lat: r for lat, r in ready.items() if r.size == rows.size} if keep else {}
            self.look, self.rows, self.block = look, rows, block
            return
        if (
            delta is not None
            and watch is self.rows
            and delta[0] is watch
            and watch is not None
            and (self.first is not None or self.lazy)
            and self.first_ok
            and block >= 0
            and rows.dtype == watch.dtype
            and not rows.flags.writeable
        ):
            _, gone, new = delta
            before = seen[new]
            if bool((before < 0).all()):  # every added row unseen (always: only the watched rows hold a block)
                self._advance_edits(rows, block, look, gone, new, before)
                return
        # only rows unhealthy at the last look can have recovered, so the (n,) array is read and written at those
        # rows alone (masked writes over 100k rows every block were the cost); they are not in `rows` (hf < 1)
        # (`take`: the values `[rows]` gathers, a new array, about 2.5x faster on 20,000 rows)
        gone = watch[~(hf.take(watch) < 1.0)] if watch is not None and watch.size else rows[:0]
        first = seen.take(rows)
        fresh = first < 0
        new = rows[fresh]
        self.undo = (np.concatenate([gone, new]), np.concatenate([seen[gone], first[fresh]]))
        seen[gone] = -1
        first[fresh] = block
        seen[new] = block
        first.flags.writeable = False
        self.first_ok = block >= 0  # every entry of `first` >= 0: the rows seen before, and this block's
        self.prev_watch, self.watch = watch, rows
        self.version += 1
        self.look, self.rows, self.first, self.ready, self.block = look, rows, first, {}, block
        self.first_hi, self.lazy = None, False

    def _advance_edits(
        self, rows: np.ndarray, block: int, look: tuple | None, gone: np.ndarray, new: np.ndarray, before: np.ndarray
    ) -> None:
        """`_advance` when `rows` are the watched rows without `gone` and with `new` (strictly increasing, `new` all
        unseen: `before` = `seen[new]` < 0), in work proportional to the edits instead of the unhealthy rows (issue 14:
        at 100,000 accounts a crash leaves 20,000-40,000 of them and a block changes a few).

        The same state as the whole-row pass: the rows that recovered are the watched rows with `hf` >= 1 (or NaN),
        which are `gone` (the watched rows not among `rows`, every row with `hf` < 1); the fresh rows (first-seen
        block < 0) are `new` (a watched row's block is its `first` entry, >= 0 by `first_ok`). So `seen` gets -1 at
        `gone` and `block` at `new`, and `first` (aligned with the rows) is the watched rows' `first` without the
        entries of `gone` and with `block` at those of `new`, in the rows' order: `seen.take(rows)` now, which is
        left to `_first` (issue 14: most looks never read it, and building it was a copy of the unhealthy rows)."""
        seen, watch = self.seen, self.watch
        assert watch is not None
        self.undo = (np.concatenate([gone, new]), np.concatenate([seen[gone], before]))
        seen[gone] = -1
        seen[new] = block
        self.prev_watch, self.watch = watch, rows
        self.version += 1
        last, ready = self.block, self.ready
        # a latency for which every watched row was ready at the last look (block b): the rows kept are ready now
        # (block - first >= b - first >= latency), a new row (first = block) only if latency <= 0
        carried: dict[int, np.ndarray] = {}
        if last is not None and block >= last:
            for lat, r in ready.items():
                if r.size == watch.size and (lat <= 0 or not new.size):
                    carried[lat] = rows
        if self.first_hi is not None and new.size:
            self.first_hi = max(self.first_hi, block)
        self.look, self.rows, self.first, self.ready, self.block = look, rows, None, carried, block
        self.lazy = True

    def _first(self) -> np.ndarray:
        """`first`, read-only, taken from `seen` if left to this: at the version that made it, the first-seen block of
        each row of `rows` is its `seen` entry (the full pass gathers `first` from `seen` and writes the same blocks to
        both; the same rows again write nothing; an edit writes -1 at rows that leave and the block at rows that come),
        and `seen` changes only with the version. Call it at the current version only."""
        if self.first is None:
            assert self.lazy and self.rows is not None
            first = self.seen.take(self.rows)
            first.flags.writeable = False
            self.first = first
        return self.first

    def _fork(self, behind: bool) -> FirstSeenChain:
        """A private copy of the state at `version` (or at version - 1, with the undo)."""
        out = FirstSeenChain(0)
        out.seen = self.seen.copy()
        out.watch = self.watch
        if behind:
            assert self.undo is not None
            out.seen[self.undo[0]] = self.undo[1]
            out.watch = self.prev_watch
        return out

    def _leave(self, version: int) -> None:
        if version == self.version:
            self.at -= 1
        else:
            self.behind -= 1


class FirstSeen:
    """One holder's first-seen bookkeeping of its markets (a liquidator's), shared with other holders when it can."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: dict[str, tuple[FirstSeenChain, int]] = {}  # market id -> (chain, version held)

    def ready(
        self,
        market_id: str,
        hf: np.ndarray,
        rows: np.ndarray,
        block: int,
        cache_key,
        latency: int,
        memo: dict,
        delta: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Look at the market and return the rows seen unhealthy for at least `latency` blocks (read-only; the same
        object for holders of a chain with the same latency). `hf`: its health factors; `rows`: its unhealthy
        candidates (hf < 1 at each), which the block's `memo` hands out once per market state when `cache_key` is not
        None. `delta` (optional, `MaskRows.delta`): given only when `rows`, read-only, are every row with `hf` < 1 and
        are `delta[0]` without the values `delta[1]` and with the values `delta[2]`; the bookkeeping is then updated at
        those edits alone when `delta[0]` is the rows it watches."""
        look = (block, cache_key) if cache_key is not None else None
        held = self.held.get(market_id)
        if held is not None and held[0].seen.size != hf.size:  # the book grew: start again from nothing
            held[0]._leave(held[1])
            held = None
        if held is None:
            chain = memo.get((_NEW, market_id, hf.size, look)) if look is not None else None
            if chain is not None and chain.version == 1 and chain.look == look and chain.rows is rows:
                chain.behind += 1  # its version 0 is where this holder starts: every row unseen, nothing watched
                held = (chain, 0)
            else:
                chain = FirstSeenChain(hf.size)
                if look is not None:
                    memo[(_NEW, market_id, hf.size, look)] = chain
                held = (chain, 0)
        chain, version = held
        if version == chain.version - 1 and look is not None and chain.look == look and chain.rows is rows:
            chain.behind -= 1  # the look that made the current version is this one: take it
            chain.at += 1
        elif version == chain.version and chain.behind == 0:
            chain._advance(hf, rows, block, look, delta)
            chain.behind, chain.at = chain.at - 1, 1
        else:  # a look of its own: a private copy
            chain._leave(version)
            chain = chain._fork(behind=version != chain.version)
            chain._advance(hf, rows, block, look, delta)
        self.held[market_id] = (chain, chain.version)
        out = chain.ready.get(latency)
        if out is None:
            first = chain._first()
            if chain.first_hi is None and first.size:
                chain.first_hi = int(first.max())
            hi = chain.first_hi
            if hi is not None and block - hi >= latency and not rows.flags.writeable:
                out = rows  # every row seen for long enough (block - first >= block - hi): the mask is all True
            else:
                out = rows[block - first >= latency]
                out.flags.writeable = False
            chain.ready[latency] = out
        return out
