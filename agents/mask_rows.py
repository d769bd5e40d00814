"""The rows a boolean mask selects, kept from one block to the next and updated where the mask flipped (issue 14).

`np.flatnonzero(mask)` (or `base[mask]`) over a random mask of 100,000 rows costs a few hundred microseconds: the
compaction branches on every entry. Between two blocks the liquidators' unhealthy mask and the borrowers' alarm
mask flip at a few rows, so `MaskRows` finds those (`last != mask`, a sparse scan) and removes and inserts them in
the sorted rows of the last call.

The result is the very array the compaction gives: with `base` strictly increasing (or None: the positions
themselves) the rows of a mask are a strictly increasing array, one per set of selected positions; removing the
values whose entry turned False (each is in the last rows, found by binary search) and inserting in order those
whose entry turned True (none is in them) gives that set, sorted. Unchanged masks return the last array itself.
"""

from __future__ import annotations

import numpy as np

#: above this many flipped entries the plain compaction (one pass) is cheaper than splicing slices
_MAX_FLIPPED = 64
#: below this many entries the plain compaction is about as cheap as finding the flips (measured at 10,000 accounts)
_MIN_SIZE = 16_384
#: from this many entries on `flipped` compares the masks word by word (below, its extra calls cost more than it saves)
_MIN_WORDS = 32_768
#: the positions 0-7 of the bytes of a 64-bit word (`flipped`)
_BYTES = np.arange(8)


def flipped(last: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """`np.flatnonzero(last != mask)` for two 1-D boolean arrays of one size, or None when more than `_MAX_FLIPPED`
    entries differ. The masks are compared 8 bytes at a time (as 64-bit words: an eighth of the comparisons and of
    the compaction, issue 14), and only the bytes of the words that differ one by one: bools that differ have
    different bytes (0 and not 0), so no flip is missed, and two bytes that differ but hold the same truth value (a
    bool array made from other bytes) are dropped by the byte-wise `!=` of the bools. The positions come out
    increasing: words in order, bytes in order within a word, then the tail of fewer than 8 entries. More than
    `_MAX_FLIPPED` words that differ: the plain expression (such bytes could make many words differ and few bools).
    Smaller masks (below `_MIN_WORDS` entries) and others (not 1-D, not contiguous): the plain expression."""
    n = mask.size
    if n < _MIN_WORDS or mask.ndim != 1 or last.ndim != 1 or not (mask.flags.c_contiguous and last.flags.c_contiguous):
        flip = np.flatnonzero(last != mask)
        return flip if flip.size <= _MAX_FLIPPED else None
    n8 = n - n % 8
    words = (last[:n8].view(np.uint64) != mask[:n8].view(np.uint64)).nonzero()[0]
    if words.size > _MAX_FLIPPED:  # many words differ: the plain expression (bytes may differ where bools do not)
        flip = np.flatnonzero(last != mask)
        return flip if flip.size <= _MAX_FLIPPED else None
    if words.size:
        at = (words[:, None] * 8 + _BYTES).ravel()
        flip = at[last[at] != mask[at]]
    else:
        flip = words
    if n8 < n:
        tail = (last[n8:] != mask[n8:]).nonzero()[0]
        if tail.size:
            flip = np.concatenate([flip, tail + n8])
    return flip if flip.size <= _MAX_FLIPPED else None


def spliced_entries(
    keys: np.ndarray, values: np.ndarray, gone: np.ndarray, add: np.ndarray, add_values: np.ndarray
) -> np.ndarray:
    """`values` (one per entry of the strictly increasing `keys`) without the entries of the keys `gone` (each in
    `keys`) and with `add_values` for the keys `add` (strictly increasing, none in `keys`), in the order of the keys
    so edited: the slices between the edits, concatenated (a new array; `np.delete` and `np.insert` build an (n,)
    mask each)."""
    # each edit at its position in `keys`: a removal of keys[p], or an insertion before keys[p] (before a removal
    # at the same position: the inserted key is below keys[p]); insertions at one position in increasing order
    edits = sorted(
        [(p, 0, i) for i, p in enumerate(np.searchsorted(keys, add).tolist())]
        + [(p, 1, 0) for p in np.searchsorted(keys, gone).tolist()]
    )
    pieces, cur = [], 0
    for p, kind, i in edits:
        if p > cur:
            pieces.append(values[cur:p])
            cur = p
        if kind == 0:
            pieces.append(add_values[i : i + 1])
        else:
            cur = p + 1
    pieces.append(values[cur:])
    return np.concatenate(pieces)


def _spliced(rows: np.ndarray, gone: np.ndarray, add: np.ndarray) -> np.ndarray:
    """`rows` (strictly increasing) without the values `gone` (each in it) and with the values `add` (none in it,
    increasing), sorted and read-only: the rows are their own entries."""
    out = spliced_entries(rows, rows, gone, add, add)
    out.flags.writeable = False
    return out


class MaskRows:
    """`np.flatnonzero(mask)` (`base` None) or `base[mask]` (`base` strictly increasing, kept by identity), read-only,
    updated from the last call's mask when the base is the same object and the shape the same."""

    __slots__ = ("base", "mask", "rows", "delta")

    def __init__(self) -> None:
        self.base: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.rows: np.ndarray | None = None
        #: after `select`: (the last call's rows, the values dropped, the values added), the new rows being the first
        #: without the second and with the third (all strictly increasing), or None when it compacted afresh; lets a
        #: caller that kept per-row figures of the last rows update them at the edits only (`agents.first_seen`)
        self.delta: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def removed(self) -> np.ndarray | None:
        """After `select`: the values of the last call's rows that it dropped (their entry turned False), or None when
        it compacted the mask afresh (`delta`'s second part)."""
        return None if self.delta is None else self.delta[1]

    def select(self, mask: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """The selected rows (read-only). A mask of `_MIN_SIZE` entries or more is kept (made read-only) for the next
        call: pass a fresh array."""
        if mask.size < _MIN_SIZE:  # a small mask: the plain compaction, nothing kept (checked first: cheapest)
            self.base = self.mask = self.rows = self.delta = None
            return self._plain(mask, base)
        last, rows = self.mask, self.rows
        if (
            last is None
            or rows is None
            or self.base is not base
            or last.shape != mask.shape
            or mask.dtype != np.bool_
            or (base is not None and base.flags.writeable)
        ):
            rows, delta = self._plain(mask, base), None
        else:
            flip = flipped(last, mask)
            if flip is None:
                rows, delta = self._plain(mask, base), None
            else:
                on = mask[flip]
                vals = flip if base is None else base[flip]
                removed, added, prev = vals[~on], vals[on], rows
                if flip.size:
                    rows = _spliced(rows, removed, added)
                delta = (prev, removed, added)
        self.delta = delta
        mask.flags.writeable = False
        self.base, self.mask, self.rows = base, mask, rows
        return rows

    @staticmethod
    def _plain(mask: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        if base is not None:
            rows = base[mask]
        else:  # `np.flatnonzero`, without its ravel and wrapper for a 1-D mask (the same positions, dtype intp)
            rows = mask.nonzero()[0] if mask.ndim == 1 else np.flatnonzero(mask)
        rows.flags.writeable = False
        return rows
