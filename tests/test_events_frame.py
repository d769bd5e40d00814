"""The run's event table: the flat-dict fast path gives the rows `Event.row()` gives (dataclasses.asdict)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from defistress.protocols.events import BadDebt, Generic, Reverted, Swapped, UserAction
from defistress.sim.experiments.runs import events_frame


def test_rows_of_numpy_scalars_and_mixed_events_equal_the_asdict_rows():
    events = [
        Reverted(3, "chain", "liq-1", "liquidate", "health >= 1", np.float64(0.0125)),
        Swapped(3, "uni", "k", "ETH", np.float64(1.5), "DAI", 2999.25, np.float64(-0.0004)),
        BadDebt(4, "lend", np.int64(17), "USDC", np.float64(12.5), 12.5),
        Generic(4, "perps", "insurance_payout", {"account": 3, "amount_usd": np.float64(7.0)}),
        Swapped(5, "uni", "k", "DAI", 10.0, "ETH", 0.005, 0.0),
    ]
    want = pd.DataFrame([e.row() for e in events])
    got = events_frame(events)
    pd.testing.assert_frame_equal(got, want)
    # the values are those asdict copies: same numbers and types, cell by cell
    assert got.loc[0, "gas_paid_eth"] == 0.0125 and got.loc[2, "account"] == 17
    assert type(got.loc[2, "account"]) is type(want.loc[2, "account"])
    assert list(got["kind"]) == ["revert", "swap", "bad_debt", "insurance_payout", "swap"]


def test_a_field_holding_a_list_takes_the_asdict_path_and_is_copied():
    held = [1.0, np.float64(2.0)]
    e = UserAction(2, "lend", "top_up", 3, "ETH", held)  # a list where a float belongs: not a flat field
    got = events_frame([e])
    pd.testing.assert_frame_equal(got, pd.DataFrame([e.row()]))
    assert got.loc[0, "amount"] == [1.0, 2.0] and got.loc[0, "amount"] is not held
