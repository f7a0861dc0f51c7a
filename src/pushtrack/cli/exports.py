"""``pushtrack export``, ``pushtrack stats`` and ``pushtrack purge``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pushtrack.cli.common import (
    Account,
    AsJson,
    Database,
    console,
    emit,
    err,
    fail,
    load_settings,
    with_store,
)
from pushtrack.domain.platforms import name_of
from pushtrack.domain.status import COUNTERS
from pushtrack.domain.timeutil import DAY_US, day_of, parse_day, to_wire, window_start
from pushtrack.jobs import retention
from pushtrack.jobs.tracklog import ExportResult, csv_name, day_query, export_to_file
from pushtrack.store import Store
from pushtrack.store.stats import Totals

commands = typer.Typer()

#: Counters shown in red in the stats table.
_RED = frozenset({"errors"})

RetentionDays = Annotated[
    int | None,
    typer.Option(
        "--retention-days",
        help="Days of tracking data kept (default 14, or PUSHTRACK_RETENTION_DAYS).",
        show_default=False,
    ),
]


class _RateColumn(ProgressColumn):
    """Rows per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "… rows/s", style="cyan")


@commands.command()
def export(
    date: Annotated[str, typer.Option("--date", help="The UTC day, YYYY-MM-DD.")],
    app: Annotated[str | None, typer.Option("--app", help="Only this application.")] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="ZIP file to write (default tracking_log_DATE.zip)."),
    ] = None,
    account: Account = "default",
    retention_days: RetentionDays = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Write one day's tracking log as a ZIP holding one CSV (the getTrackingLog format)."""
    settings = load_settings(database, retention_days=retention_days)
    try:
        day = to_wire(parse_day(date))[:10]
    except ValueError:
        fail(f'--date: expected "YYYY-MM-DD", got {date!r}')
    path = output or Path(f"tracking_log_{day}.zip")

    async def run(store: Store) -> tuple[ExportResult, float]:
        now = store.clock()
        start = parse_day(day)
        if start > day_of(now):
            fail(f"--date: {day} is in the future (today is {to_wire(now)[:10]} UTC)")
        if start + DAY_US <= window_start(now, settings.retention_days):
            fail(
                f"--date: {day} is outside the retention window of"
                f" {settings.retention_days} days: no tracking data is kept for it"
            )
        if app is not None:
            found = await store.get_app(app)
            if found is None or found.account != account:
                fail(f"no application {app} in account {account!r}")
        query = day_query(
            account, day, now=now, retention_days=settings.retention_days, app_code=app
        )
        total = await asyncio.to_thread(store.exports.count_sync, query)
        columns = (
            TextColumn("[bold]export[/bold] " + day),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        started = time.monotonic()
        with Progress(*columns, console=err, disable=as_json) as progress:
            task = progress.add_task("rows", total=total)
            result = await asyncio.to_thread(
                export_to_file,
                store,
                query,
                path,
                csv_name(day, app),
                progress=lambda n: progress.advance(task, n),
            )
        return result, time.monotonic() - started

    result, seconds = with_store(database, run)
    rate = result.rows / seconds if seconds > 0 else 0.0
    emit(
        as_json,
        {"file": str(path), "rows": result.rows, "bytes": result.size, "seconds": seconds},
        f"wrote {path}: {result.rows:,} rows, {result.size:,} bytes"
        f" in {seconds:.1f}s ({rate:,.0f} rows/s)",
    )


#: The funnel side by side: sent, accepted by the gateway, confirmed by the device, opened.
_SHOWN = ("sends", "deliveries", "confirmed", "opens", "inbox_opens", "unshowable_sends", "errors")
assert set(_SHOWN) == set(COUNTERS)


@commands.command()
def stats(
    message_code: str,
    interval: Annotated[
        str, typer.Option("--interval", help="minute, hour or day.", show_default=True)
    ] = "hour",
    account: Account = "default",
    retention_days: RetentionDays = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Print a message's counters per hour (or minute, or day) and platform."""
    if interval not in ("minute", "hour", "day"):
        fail("--interval must be minute, hour or day")
    bucket: Literal["minute", "hour", "day"] = interval  # type: ignore[assignment]
    settings = load_settings(database, retention_days=retention_days)

    async def run(store: Store) -> list[Totals]:
        since = window_start(store.clock(), settings.retention_days)
        message = await store.stats.find_message(account, None, message_code)
        if message is None:
            fail(f"no message {message_code} in account {account!r}")
        return await store.stats.counters(message.id, bucket, since)

    rows = with_store(database, run)
    if as_json:
        emit(
            True,
            [
                {"timestamp": to_wire(t.bucket), "platform": name_of(t.platform)}
                | {c: getattr(t, c) for c in COUNTERS}
                for t in rows
            ],
            "",
        )
        return
    table = Table()
    table.add_column(f"{bucket} (UTC)", no_wrap=True)
    table.add_column("platform", no_wrap=True)
    for c in _SHOWN:  # numbers right-aligned; failures in red
        table.add_column(c.replace("_", " "), justify="right", style="red" if c in _RED else None)
    for t in rows:
        table.add_row(
            to_wire(t.bucket), name_of(t.platform), *(f"{getattr(t, c):,}" for c in _SHOWN)
        )
    if rows:
        table.add_section()
        table.add_row(
            "total", "", *(f"{sum(getattr(t, c) for t in rows):,}" for c in _SHOWN), style="bold"
        )
    console.print(table)


@commands.command()
def purge(
    retention_days: RetentionDays = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Remove tracking data older than the retention window, now (workers do it hourly)."""
    settings = load_settings(database, retention_days=retention_days)
    report = with_store(database, lambda store: retention.purge(store, settings))
    data = {
        "before": to_wire(report.before),
        "events": report.events,
        "partitions": report.partitions,
        "messages": report.messages,
        "deliveries": report.deliveries,
        "counters": report.counters,
        "jobs": report.jobs,
        "files": report.files,
        "device_events": report.device_events,
        "dead_tokens": report.dead_tokens,
    }
    text = f"removed what is older than {data['before']} UTC: " + ", ".join(
        f"{v:,} {k}" for k, v in data.items() if k != "before"
    )
    emit(as_json, data, text)
