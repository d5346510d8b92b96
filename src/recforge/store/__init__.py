"""Precomputed recommendations in SQL (SQLite or PostgreSQL); see :mod:`recforge.store.sql`.

Importing this package never imports torch: it is what the service's store mode uses.
"""

from recforge.store.sql import (
    ACTIVE,
    Recommendation,
    RowBlock,
    Store,
    StoreError,
    VersionInfo,
    open_store,
)

__all__ = [
    "ACTIVE",
    "Recommendation",
    "RowBlock",
    "Store",
    "StoreError",
    "VersionInfo",
    "open_store",
]
