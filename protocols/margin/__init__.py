"""Option pricing, vol surfaces, the portfolio representation and margin models (see registry.get_model)."""
from protocols.margin.black76 import call_put, greeks, implied_vol, price
from protocols.margin.portfolio import CALL, FUTURE, PERP, PUT, SPOT, MarketState, Portfolio
from protocols.margin.registry import get_model, list_models, register
from protocols.margin.result import MarginResult

__all__ = ["CALL", "FUTURE", "PERP", "PUT", "SPOT", "MarginResult", "MarketState", "Portfolio", "call_put",
           "get_model", "greeks", "implied_vol", "list_models", "price", "register"]
