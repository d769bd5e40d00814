"""The option-venue populations (issue 5): writers, delta hedgers and protection buyers, one module each.

Each is one mesa.Agent owning many rows of a `protocols.options.OptionsVenue`; they trade with the venue's
market maker at mark and act each block through batched Tx (gas per account in the batch).
"""

from defistress.agents.delta_hedgers import DeltaHedgers, DeltaHedgersParams
from defistress.agents.option_book import StripParams
from defistress.agents.option_population import OptionPopulation, OptionPopulationParams
from defistress.agents.option_writers import OptionWriters, OptionWritersParams
from defistress.agents.protection_buyers import ProtectionBuyers, ProtectionBuyersParams

__all__ = [
    "DeltaHedgers",
    "DeltaHedgersParams",
    "OptionPopulation",
    "OptionPopulationParams",
    "OptionWriters",
    "OptionWritersParams",
    "ProtectionBuyers",
    "ProtectionBuyersParams",
    "StripParams",
]
