"""The attentive borrowers' alarm test over a slice of the book instead of a gather of their rows (issue 14).

`BorrowerPopulation.submit` selects `local[hf[accounts[local]] < alarm[local]]` every block, `local` the attentive
positions (increasing): at 100,000 accounts a gather of 30,000 health factors (USD/USD) and a compaction of a mask
over them. A population's accounts are the rows `add_accounts` appended, `start .. start + n - 1`, so `hf` of those
rows is the slice `hf[start : start + n]` (a view, no copy), and position i of the population compares against its
alarm level where attentive and against NaN elsewhere: `x < NaN` is False for every x (NaN included), and for an
attentive position the comparison is the very `hf[start + i] < alarm[i]` of the gather. The positions where it holds,
increasing, are the attentive positions where the old test holds, in the same order: the same array.
"""

from __future__ import annotations

import numpy as np


def alarm_span(attentive: np.ndarray, alarm: np.ndarray, accounts: np.ndarray) -> tuple[int, np.ndarray]:
    """(`start`, alarm levels (health factor) per position with NaN where not attentive) when `accounts` is
    `start, start + 1, ..., start + n - 1` and the levels are float64 (the comparison is then the gather's, dtype
    for dtype), else (-1, an empty array): the caller gathers."""
    n = accounts.size
    if (
        accounts.ndim != 1
        or attentive.shape != (n,)
        or alarm.shape != (n,)
        or alarm.dtype != np.float64
        or attentive.dtype != np.bool_
        or not np.issubdtype(accounts.dtype, np.integer)
        or n == 0
    ):
        return -1, np.zeros(0)
    start = int(accounts[0])
    if start < 0 or not bool((accounts == np.arange(start, start + n)).all()):
        return -1, np.zeros(0)
    levels = np.where(attentive, alarm, np.nan)
    levels.flags.writeable = False
    return start, levels
