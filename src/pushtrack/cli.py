"""The ``pushtrack`` command."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from pushtrack import config
from pushtrack.api import auth
from pushtrack.domain import codes
from pushtrack.domain.timeutil import to_wire
from pushtrack.store import Store, open_store
from pushtrack.store.base import ConflictError, StoreError
from pushtrack.store.sqlite import sqlite_path

T = TypeVar("T")

cli = typer.Typer(
    name="pushtrack",
    help="Self-hosted push notifications with a per-device delivery audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app_cli = typer.Typer(help="Applications.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
cli.add_typer(app_cli, name="app")
cli.add_typer(token_cli, name="token")

#: Off a terminal (a pipe, a file) tables are as wide as their rows, not cut at 80
#: columns; on a terminal they fit its width.
console = Console(width=None if sys.stdout.isatty() else 400)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"pushtrack {metadata.version('pushtrack')}")
        raise typer.Exit


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Self-hosted push notifications with a per-device delivery audit trail."""


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


def _settings(database: str | None, **overrides: Any) -> config.Settings:
    try:
        return config.load({"database": database, **overrides})
    except (ValueError, OSError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _with_store(
    database: str | None, fn: Callable[[Store], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``fn`` on the store; a SQLite file that does not exist is refused unless
    ``create`` (a mistyped path must not look like an empty service)."""
    settings = _settings(database)
    if not create and settings.database.startswith("sqlite:"):
        path = Path(sqlite_path(settings.database))
        if not path.exists():
            _fail(
                f"database: {path} does not exist (pushtrack serve or pushtrack app create"
                " makes it; check --database or PUSHTRACK_DATABASE)"
            )

    async def run() -> T:
        store = open_store(settings.database)
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ConflictError as exc:
        _fail(str(exc))
    except StoreError as exc:
        _fail(f"database: {exc}")


def _emit(as_json: bool, data: Any, text: str) -> None:
    sys.stdout.write((json.dumps(data) if as_json else text) + "\n")
    sys.stdout.flush()


# -- serve ------------------------------------------------------------------------------


@cli.command()
def serve(
    database: Database = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8080).")] = None,
    retention_days: RetentionDays = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Run a worker in this process (default: the worker setting, on).",
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="On a first start on an empty SQLite database, create a demo application"
            " and print its tokens (make run does this).",
        ),
    ] = False,
    log_format: LogFormat = None,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="One log record per API request."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run the HTTP API (and, unless --no-worker, a worker)."""
    from pushtrack.server import ListenError, run_server

    settings = _settings(
        database,
        host=host,
        port=port,
        worker=worker,
        retention_days=retention_days,
        log_format=log_format,
        access_log=access_log,
    )
    try:
        run_server(settings, announce=lambda data, text: _emit(as_json, data, text), demo=demo)
    except StoreError as exc:
        _fail(f"database: {exc}")
    except ListenError as exc:
        _fail(str(exc))


@cli.command("demo")
def demo_command(database: Database = None, as_json: AsJson = False) -> None:
    """Create a demo application on the sandbox gateway; print its code and tokens (once)."""
    from pushtrack.server import create_demo

    made = _with_store(database, create_demo, create=True)
    _emit(
        as_json,
        made,
        f"application:  {made['application']}\n"
        f"server token: {made['server_token']}\n"
        f"device token: {made['device_token']}",
    )


# -- applications ---------------------------------------------------------------------


@app_cli.command("create")
def app_create(
    name: str,
    tracking: Annotated[bool, typer.Option("--tracking/--no-tracking")] = True,
    open_logging: Annotated[bool, typer.Option("--open-logging/--no-open-logging")] = True,
    device_token_required: Annotated[
        bool, typer.Option("--device-token-required/--no-device-token-required")
    ] = True,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Create an application; prints its code."""
    if not name.strip():
        _fail("NAME must not be empty")
    created = _with_store(
        database,
        lambda s: s.create_app(
            account,
            name,
            tracking=tracking,
            open_logging=open_logging,
            device_token_required=device_token_required,
        ),
        create=True,
    )
    _emit(as_json, {"code": created.code, "name": created.name}, created.code)


@app_cli.command("list")
def app_list(
    account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """List the applications of an account."""
    apps = _with_store(database, lambda s: s.list_apps(account))
    if as_json:
        _emit(
            True,
            [
                {
                    "code": a.code,
                    "name": a.name,
                    "tracking": a.tracking,
                    "open_logging": a.open_logging,
                    "device_token_required": a.device_token_required,
                    "created_at": to_wire(a.created_at),
                }
                for a in apps
            ],
            "",
        )
        return
    table = Table("code", "name", "tracking", "open logging", "device token", "created (UTC)")
    for a in apps:
        table.add_row(
            a.code,
            a.name,
            _yn(a.tracking),
            _yn(a.open_logging),
            "required" if a.device_token_required else "optional",
            to_wire(a.created_at),
        )
    console.print(table)


def _yn(flag: bool) -> str:
    return "on" if flag else "off"


# -- tokens -----------------------------------------------------------------------------


@token_cli.command("create")
def token_create(
    kind: Annotated[str, typer.Option("--kind", help="server or device.")],
    app: Annotated[
        list[str] | None, typer.Option("--app", help="Limit to this application (repeatable).")
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", help="Limit to this method (repeatable).")
    ] = None,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    if kind not in auth.KINDS:
        _fail("--kind must be server or device")
    if method:
        from pushtrack.api.app import method_names

        unknown = sorted(set(method) - method_names())
        if unknown:
            known = ", ".join(sorted(method_names()))
            _fail(f"unknown method(s) {', '.join(unknown)}; known: {known}")
    raw = codes.secret_token()
    _with_store(
        database,
        lambda s: s.create_token(
            account, kind, auth.hash_token(raw), auth.prefix_of(raw), app or None, method or None
        ),
    )
    _emit(as_json, {"token": raw}, raw)


@token_cli.command("list")
def token_list(
    account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """List tokens (prefixes only; tokens themselves are never stored)."""
    tokens = _with_store(database, lambda s: s.list_tokens(account))
    rows = [
        {
            "prefix": t.prefix,
            "kind": t.kind,
            "apps": sorted(t.apps) if t.apps is not None else None,
            "methods": sorted(t.methods) if t.methods is not None else None,
            "created_at": to_wire(t.created_at),
            "revoked": t.revoked,
        }
        for t in tokens
    ]
    if as_json:
        _emit(True, rows, "")
        return
    table = Table("prefix", "kind", "applications", "methods", "created (UTC)", "state")
    for t in tokens:
        table.add_row(
            t.prefix + "…",
            t.kind,
            ", ".join(sorted(t.apps)) if t.apps is not None else "all",
            ", ".join(sorted(t.methods)) if t.methods is not None else "all",
            to_wire(t.created_at),
            "[red]revoked[/]" if t.revoked else "active",
        )
    console.print(table)


@token_cli.command("revoke")
def token_revoke(
    prefix: str, account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """Revoke the tokens whose printed prefix is PREFIX."""
    if len(prefix) < 8:
        _fail("PREFIX must be the 8 characters `token list` shows")
    n = _with_store(database, lambda s: s.revoke_tokens(account, prefix[:8]))
    if n == 0:
        _fail(f"no active token with prefix {prefix[:8]}")
    _emit(as_json, {"revoked": n}, f"revoked {n} token(s)")


@cli.command()
def worker(
    database: Database = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
    retention_days: RetentionDays = None,
    log_format: LogFormat = None,
    as_json: AsJson = False,
) -> None:
    """Run a worker: sends pushes, builds exports, applies retention. Stops on SIGTERM."""
    from pushtrack.server import run_worker

    settings = _settings(
        database,
        worker_concurrency=concurrency,
        retention_days=retention_days,
        log_format=log_format,
    )
    try:
        run_worker(settings, announce=lambda data, text: _emit(as_json, data, text))
    except StoreError as exc:
        _fail(f"database: {exc}")


def main() -> None:
    import pushtrack.cli_devices  # registers app device
    import pushtrack.cli_doctor  # registers doctor
    import pushtrack.cli_exports  # registers export, stats, purge
    import pushtrack.cli_gateways  # registers the gateway commands
    import pushtrack.cli_secrets  # registers secrets
    import pushtrack.cli_webhooks  # noqa: F401 - registers webhook, tail

    cli()
