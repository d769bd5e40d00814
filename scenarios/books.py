"""Bundled position books: a name -> file registry for scenario `book = "..."` keys (data only, no parsing).

The crvUSD books are whole crvUSD mint markets at Ethereum block 19122585 (2024-01-30), copied from
xenophonlabs/crvUSDrisk (MIT); provenance and checksums in books/crvusd/PROVENANCE.md.
"""

from __future__ import annotations

from pathlib import Path

BOOKS_DIR = Path(__file__).parent / "books"

#: book name -> (file relative to BOOKS_DIR, collateral symbol the file must declare)
CRVUSD_BOOKS: dict[str, tuple[str, str]] = {
    "crvusd-weth": ("crvusd/pool_metadata_0x1681195c176239ac5e72d9aebacf5b2492e0c4ee.json", "WETH"),
    "crvusd-wsteth": ("crvusd/pool_metadata_0x37417b2238aa52d0dd2d6252d989e728e8f706e4.json", "wstETH"),
    "crvusd-sfrxeth": ("crvusd/pool_metadata_0xfa96ad0a9e64261db86950e2da362f5572c5c6fd.json", "sfrxETH"),
    "crvusd-wbtc": ("crvusd/pool_metadata_0xe0438eb3703bf871e31ce639bd351109c88666ea.json", "WBTC"),
    "crvusd-tbtc": ("crvusd/pool_metadata_0xf9bd9da2427a50908c4c6d1599d8e62837c2bcb0.json", "tBTC"),
}


def book_names() -> list[str]:
    return sorted(CRVUSD_BOOKS)


def book_path(name: str) -> Path | None:
    """The bundled file of a named book, or None when `name` is not a bundled book."""
    entry = CRVUSD_BOOKS.get(name)
    return BOOKS_DIR / entry[0] if entry else None


def book_symbol(name: str) -> str | None:
    """The collateral symbol a named book must declare (checked by the loader)."""
    entry = CRVUSD_BOOKS.get(name)
    return entry[1] if entry else None
