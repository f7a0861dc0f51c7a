"""Fixtures shared by the whole suite: real databases, a real server over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Service, service

POSTGRES_URL = os.environ.get(
    "PUSHTRACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _postgres_available() -> bool:
    try:
        import pushtrack.store.postgres  # noqa: F401
    except ImportError:
        return False
    return True


ENGINES = ["sqlite"] + (["postgresql"] if _postgres_available() else [])


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _url(name: str) -> str:
    return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that each test's database is copied from (much cheaper)."""
    from pushtrack.store import open_store
    from tests.support import run

    name = f"pt_template_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")
    run(open_store(_url(name)).close())  # opening migrates
    try:
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_database_url(engine: str, tmp_path: Path, template: str | None = None) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path}/pushtrack.db"
        return
    name = f"pt_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield _url(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    template = request.getfixturevalue("pg_template") if request.param == "postgresql" else None
    yield from fresh_database_url(request.param, tmp_path, template)


@pytest.fixture
def svc(database_url: str) -> Iterator[Service]:
    with service(database_url) as s:
        yield s
