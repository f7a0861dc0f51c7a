"""``pushtrack serve``, ``pushtrack worker`` and ``pushtrack demo``: the processes."""

from __future__ import annotations

from typing import Annotated

import typer

from pushtrack.cli.common import (
    AsJson,
    Database,
    LogFormat,
    RetentionDays,
    emit,
    fail,
    load_settings,
    require_database,
    with_store,
)
from pushtrack.store.base import StoreError

commands = typer.Typer()


@commands.command()
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

    settings = load_settings(
        database,
        host=host,
        port=port,
        worker=worker,
        retention_days=retention_days,
        log_format=log_format,
        access_log=access_log,
    )
    try:
        run_server(settings, announce=lambda data, text: emit(as_json, data, text), demo=demo)
    except StoreError as exc:
        fail(f"database: {exc}")
    except ListenError as exc:
        fail(str(exc))


@commands.command("demo")
def demo_command(database: Database = None, as_json: AsJson = False) -> None:
    """Create a demo application on the sandbox gateway; print its code and tokens (once)."""
    from pushtrack.server import create_demo

    made = with_store(database, create_demo, create=True)
    emit(
        as_json,
        made,
        f"application:  {made['application']}\n"
        f"server token: {made['server_token']}\n"
        f"device token: {made['device_token']}",
    )


@commands.command()
def worker(
    database: Database = None,
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
    retention_days: RetentionDays = None,
    log_format: LogFormat = None,
    as_json: AsJson = False,
) -> None:
    """Run a worker: sends pushes, builds exports, applies retention. Stops on SIGTERM."""
    from pushtrack.server import run_worker

    settings = load_settings(
        database,
        worker_concurrency=concurrency,
        retention_days=retention_days,
        log_format=log_format,
    )
    require_database(settings)  # serve makes the database, a worker only joins it
    try:
        run_worker(settings, announce=lambda data, text: emit(as_json, data, text))
    except StoreError as exc:
        fail(f"database: {exc}")
