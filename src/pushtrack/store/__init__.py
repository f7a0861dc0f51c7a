"""Persistence: one ``Store`` interface, an engine per database.

``open_store(url)`` picks the engine from the database URL. Nothing outside
this package writes SQL.
"""

from __future__ import annotations

from pushtrack.store.base import Store, StoreError


def open_store(url: str) -> Store:
    """Open (and migrate) the store a database URL names."""
    if url.startswith("sqlite:"):
        from pushtrack.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from pushtrack.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = PostgresStore.from_url(url)
        return store
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


__all__ = ["Store", "StoreError", "open_store"]
