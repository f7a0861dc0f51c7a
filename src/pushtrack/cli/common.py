"""What every command shares: its options, the settings, opening the store, output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from pushtrack import config
from pushtrack.store import Store, open_store
from pushtrack.store.base import ConflictError, StoreError
from pushtrack.store.sqlite import sqlite_path

T = TypeVar("T")

#: Off a terminal (a pipe, a file) tables are as wide as their rows, not cut at 80
#: columns; on a terminal they fit its width.
console = Console(width=None if sys.stdout.isatty() else 400)
err = Console(stderr=True)

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="PUSHTRACK_DATABASE",
        help="Database URL (default sqlite:///./pushtrack.db).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LogFormat = Annotated[
    str | None,
    typer.Option("--log-format", help="Log lines as text or json (one object per line)."),
]
Account = Annotated[str, typer.Option("--account", help="Account (tenancy boundary).")]
RetentionDays = Annotated[
    int | None,
    typer.Option(
        "--retention-days", help="Days of tracking data kept (default 14).", show_default=False
    ),
]


def load_settings(database: str | None, **overrides: Any) -> config.Settings:
    """The settings with the command's flags on top; a bad one ends the command."""
    try:
        return config.load({"database": database, **overrides})
    except (ValueError, OSError) as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    """Say what is wrong on stderr and exit 2."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def require_database(settings: config.Settings) -> None:
    """Refuse a SQLite file that does not exist, before anything is made beside it: a
    mistyped path must not look like an empty service. (Opening the store makes it.)"""
    if settings.database.startswith("sqlite:"):
        path = Path(sqlite_path(settings.database))
        if not path.exists():
            fail(
                f"database: {path} does not exist (pushtrack serve or pushtrack app create"
                " makes it; check --database or PUSHTRACK_DATABASE)"
            )


def with_store(
    database: str | None, fn: Callable[[Store], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``fn`` on the store; a SQLite file that does not exist is refused unless
    ``create`` (``require_database``)."""
    settings = load_settings(database)
    if not create:
        require_database(settings)

    async def run() -> T:
        store = open_store(settings.database)
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ConflictError as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(f"database: {exc}")


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print ``data`` as one JSON document with ``--json``, else ``text``."""
    sys.stdout.write((json.dumps(data) if as_json else text) + "\n")
    sys.stdout.flush()
