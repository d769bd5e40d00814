"""The option-venue populations (issue 5): writers, delta hedgers and protection buyers, one module each.

Each is one mesa.Agent owning many rows of a `protocols.options.OptionsVenue`; they trade with the venue's
market maker at mark and act each block through batched Tx (gas per account in the batch).
"""
from agents.delta_hedgers import DeltaHedgers, DeltaHedgersParams
from agents.option_book import StripParams
from agents.option_population import OptionPopulation, OptionPopulationParams
from agents.option_writers import OptionWriters, OptionWritersParams
from agents.protection_buyers import ProtectionBuyers, ProtectionBuyersParams

__all__ = ["DeltaHedgers", "DeltaHedgersParams", "OptionPopulation", "OptionPopulationParams", "OptionWriters",
           "OptionWritersParams", "ProtectionBuyers", "ProtectionBuyersParams", "StripParams"]
