"""Persistence: one ``Store`` over an ``Engine`` per database.

``open_store(url)`` picks the engine from the database URL. Nothing outside
this package writes SQL.
"""

from __future__ import annotations

from pushtrack.store.base import ConflictError, Engine, StoreError
from pushtrack.store.facade import Store


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite:"):
        from pushtrack.store.sqlite import SQLiteEngine

        return SQLiteEngine.from_url(url)
    if url.startswith(("postgresql:", "postgres:")):
        from pushtrack.store import postgres

        engine: Engine = postgres.PostgresEngine.from_url(url)
        return engine
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")


def open_store(url: str) -> Store:
    """Open (and migrate) the store a database URL names."""
    return Store(open_engine(url))


__all__ = ["ConflictError", "Engine", "Store", "StoreError", "open_engine", "open_store"]
