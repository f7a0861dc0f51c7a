"""Fixtures shared by the whole suite: real databases, a real server over HTTP."""

from __future__ import annotations

import concurrent.futures
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Service, service

POSTGRES_URL = os.environ.get(
    "PUSHTRACK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.hookimpl(trylast=True)  # after pytest has grouped tests by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first, the rest in their usual order. ``-n 2 --dist loadgroup``
    hands out tests one by one as workers free up, so a long test started last keeps
    one worker busy after the other has finished everything else; started first, it
    runs beside the many short ones."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


class _Databases:
    """This test process' PostgreSQL databases: each test's own, copied from a template.

    Copying a database and dropping one take the server a second or more on a busy
    machine, mostly waiting for the disk. So the next copy of a template is made in the
    background while a test runs (a test takes a ready one), and a test's database is
    dropped in the background after it; ``close`` waits for both and drops what was
    made but not taken. Every test still gets a database of its own, fresh from the
    template, that no other test ever sees."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="databases")
        self._ready: dict[str, concurrent.futures.Future[str]] = {}
        self._drops: list[concurrent.futures.Future[None]] = []

    @staticmethod
    def _create(template: str | None) -> str:
        name = f"pt_{uuid.uuid4().hex[:12]}"
        _admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def take(self, template: str | None) -> str:
        """A new database (from ``template``, or empty); only copies of a template are
        made ahead, the next one as this one is handed out."""
        if template is None:
            return self._create(None)
        ready = self._ready.pop(template, None)
        name = ready.result() if ready is not None else self._create(template)
        self._ready[template] = self._pool.submit(self._create, template)
        return name

    def drop(self, name: str) -> None:
        self._drops.append(
            self._pool.submit(_admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        )

    def close(self) -> None:
        """Drop what was made ahead; wait for every drop (raising the first failure)."""
        for ready in self._ready.values():
            self.drop(ready.result())
        self._ready.clear()
        drops, self._drops = self._drops, []
        for done in drops:
            done.result()


_DATABASES = _Databases()


def pytest_sessionfinish() -> None:
    _DATABASES.close()


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
        _DATABASES.close()  # no copy of it is being made when it goes
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_database_url(engine: str, tmp_path: Path, template: str | None = None) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path}/pushtrack.db"
        return
    name = _DATABASES.take(template)
    try:
        yield _url(name)
    finally:
        _DATABASES.drop(name)


def template_of(request: pytest.FixtureRequest) -> str | None:
    """The migrated template for a fixture parametrized by engine (None for SQLite)."""
    return request.getfixturevalue("pg_template") if request.param == "postgresql" else None


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(request.param, tmp_path, template_of(request))


@pytest.fixture
def svc(database_url: str) -> Iterator[Service]:
    with service(database_url) as s:
        yield s
