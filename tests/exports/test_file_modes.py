"""The database and export files are readable by their user only: files 0600, folders 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushtrack.store import open_store
from tests.exports._support import Clock, clocked_service, create, tracking_log
from tests.support import run


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """A umask that would leave new files group- and world-readable."""
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_folder_are_private(tmp_path: Path) -> None:
    db = tmp_path / "data" / "pt.db"
    store = open_store(f"sqlite:///{db}")
    try:
        run(store.create_app("default", "app"))  # a write: the -wal and -shm files exist
        for path in (db, db.with_name("pt.db-wal"), db.with_name("pt.db-shm")):
            assert path.exists(), path
            assert mode(path) == 0o600, (path, oct(mode(path)))
        assert mode(db.parent) == 0o700
    finally:
        run(store.close())


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    run(open_store(f"sqlite:///{tmp_path / 'pt.db'}").close())
    assert (mode(tmp_path), mode(tmp_path / "pt.db")) == (0o755, 0o600)


def test_export_files_and_their_folder_are_private(database_url: str, tmp_path: Path) -> None:
    with clocked_service(database_url, tmp_path, Clock("2024-05-01 12:00:00")) as (svc, settings):
        svc.register("hw-1")
        create(svc, content="hello", devices=["hw-1"])
        assert tracking_log(svc, settings, date="2024-05-01")
        files = Path(settings.files_dir)
        zips = list(files.rglob("*.zip"))
        assert zips
        for path in zips:
            assert mode(path) == 0o600, (path, oct(mode(path)))
        for folder in {files, *(p.parent for p in zips)}:
            assert mode(folder) == 0o700, (folder, oct(mode(folder)))
