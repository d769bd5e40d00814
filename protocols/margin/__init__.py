"""Option pricing, vol surfaces, the portfolio representation and margin models (see catalog.get_model)."""

from defistress.protocols.margin.black76 import call_put, greeks, implied_vol, price
from defistress.protocols.margin.catalog import get_model, list_models
from defistress.protocols.margin.portfolio import CALL, FUTURE, PERP, PUT, SPOT, MarketState, Portfolio
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.result import MarginResult

__all__ = [
    "CALL",
    "FUTURE",
    "PERP",
    "PUT",
    "SPOT",
    "MarginResult",
    "MarketState",
    "Portfolio",
    "call_put",
    "get_model",
    "greeks",
    "implied_vol",
    "list_models",
    "price",
    "register",
]
