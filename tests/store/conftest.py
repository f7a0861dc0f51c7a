"""Fixtures of the engine tests: fresh databases, engines opened on them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.store import open_engine
from pushtrack.store.base import Engine
from tests.conftest import ENGINES, fresh_database_url
from tests.support import run


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty PostgreSQL database."""
    if "postgresql" not in ENGINES:
        pytest.skip("the PostgreSQL engine is not installed")
    yield from fresh_database_url("postgresql", tmp_path)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine of each kind on a fresh database."""
    opened = open_engine(database_url)
    try:
        yield opened
    finally:
        run(opened.close())
