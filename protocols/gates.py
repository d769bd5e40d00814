"""Governance switches of a market: frozen (no new positions) and paused (nothing moves), for the whole market
or for one asset. Protocols ask their gates before an action (MarginProtocol.require_active / require_unpaused raise the
reason as a Revert); governance flips them during a run.

Sources: Aave v3 ReserveConfiguration (a frozen reserve takes no new supply or borrow, while repay, withdraw
and liquidation go on; a paused reserve reverts every action: ValidationLogic RESERVE_FROZEN / RESERVE_PAUSED);
Maker's FlipperMom (spells of 15 and 17 March 2020: governance can deny the Cat on a flipper, so no liquidation
starts) and a debt ceiling of zero (no new debt).
"""

from __future__ import annotations

#: the key of a switch that covers every asset of the market
ALL = "*"


class Gates:
    """Which assets of one market are frozen or paused (ALL: the whole market)."""

    def __init__(self) -> None:
        self.frozen: set[str] = set()
        self.paused: set[str] = set()

    def set(self, state: str, on: bool, asset: str | None = None) -> None:
        """Turn `state` ('frozen' or 'paused') on or off for `asset` (None: the whole market)."""
        if state not in ("frozen", "paused"):
            raise ValueError(f"gate state {state!r}: allowed 'frozen' or 'paused'")
        target = getattr(self, state)
        key = ALL if asset is None else asset
        if on:
            target.add(key)
        elif key == ALL:
            target.clear()  # lifting the market-wide switch lifts every per-asset one too
        else:
            target.discard(key)

    def is_frozen(self, asset: str | None = None) -> bool:
        return ALL in self.frozen or (asset is not None and asset in self.frozen) or self.is_paused(asset)

    def is_paused(self, asset: str | None = None) -> bool:
        return ALL in self.paused or (asset is not None and asset in self.paused)

    def why_not_active(
        self, protocol: str, *assets: str, frozen_error: str = "RESERVE_FROZEN", paused_error: str = "RESERVE_PAUSED"
    ) -> str | None:
        """New positions: the revert reason if any asset is paused or frozen, else None."""
        why = self.why_paused(protocol, *assets, paused_error=paused_error)
        if why is not None:
            return why
        for a in assets or (None,):
            if self.is_frozen(a):
                return f"{protocol}: {frozen_error} ({a or 'market'} frozen by governance)"
        return None

    def why_paused(self, protocol: str, *assets: str, paused_error: str = "RESERVE_PAUSED") -> str | None:
        """Any movement: the revert reason if any asset is paused, else None."""
        for a in assets or (None,):
            if self.is_paused(a):
                return f"{protocol}: {paused_error} ({a or 'market'} paused by governance)"
        return None
