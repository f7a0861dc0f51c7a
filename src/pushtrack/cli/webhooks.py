"""``pushtrack webhook``: an application's webhook endpoints; ``pushtrack tail``: the
trail as it happens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from pushtrack.api.deadtokens import parse_since
from pushtrack.api.errors import ArgumentError
from pushtrack.api.webhooks import event_filter, shown
from pushtrack.cli.common import (
    Account,
    AsJson,
    Database,
    emit,
    fail,
    load_settings,
    require_database,
    with_store,
)
from pushtrack.delivery import outbound
from pushtrack.domain.timeutil import window_start
from pushtrack.jobs import webhooks as hooks
from pushtrack.sealing import SealingError
from pushtrack.store import Store, open_store
from pushtrack.store.base import App, ConflictError
from pushtrack.store.webhooks import Webhook

#: ``pushtrack webhook``.
group = typer.Typer(help="Webhook endpoints of an application.", no_args_is_help=True)
#: ``pushtrack tail``.
commands = typer.Typer()

Statuses = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help=f"Only events of this status (repeatable): {', '.join(hooks.STATUS_NAMES)}.",
        show_default=False,
    ),
]

#: Colours of the statuses in a terminal.
COLOURS = {
    "created": "dim",
    "sent": "cyan",
    "delivered": "green",
    "confirmed": "bold green",
    "opened": "magenta",
    "failed": "red",
}


async def _app(store: Store, account: str, code: str) -> App:
    for app in await store.list_apps(account):
        if app.code == code:
            return app
    raise ConflictError(f"no application {code} in account {account!r}")


async def _hook(store: Store, account: str, code: str, url: str) -> Webhook:
    app = await _app(store, account, code)
    found = await store.webhooks.find(app.id, url)
    if found is None:
        raise ConflictError(f"{url} is not a webhook of {code}")
    return found


def _text(data: dict[str, Any]) -> str:
    return "\n".join(
        f"{key:14} {'' if value is None else ','.join(value) if isinstance(value, list) else value}"
        for key, value in data.items()
    )


@group.command("add")
def add(
    code: str,
    url: str,
    status: Statuses = None,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="The signing secret (else one is made).", show_default=False),
    ] = None,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Add a webhook endpoint to an application: its events from now on are POSTed to
    URL, signed with the secret printed here."""
    settings = load_settings(database)
    try:
        statuses = hooks.parse_statuses(status)
        hooks.check_url(settings, url)
    except (ValueError, outbound.Refused) as exc:
        fail(str(exc))
    if secret is not None and not 16 <= len(secret) <= 200:
        fail("--secret must be 16 to 200 characters")
    require_database(settings)  # before a key file is made beside a mistyped path
    given = secret or hooks.new_secret()
    try:
        sealed = hooks.seal_secret(settings, given)
    except SealingError as exc:
        fail(str(exc))

    async def run(store: Store) -> Webhook:
        app = await _app(store, account, code)
        return await store.webhooks.add(account, app.id, url, sealed, statuses, sealed=True)

    data = shown(with_store(database, run), secret=given)
    emit(as_json, data, _text(data))


@group.command("list")
def list_(
    code: Annotated[str | None, typer.Argument(help="Only this application's.")] = None,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """List webhook endpoints: what each has been sent, and whether it is failing."""

    async def run(store: Store) -> list[Webhook]:
        if code is not None:
            await _app(store, account, code)
        return await store.webhooks.list(account, None, code)

    rows = [shown(h) for h in with_store(database, run)]
    if as_json:
        emit(True, rows, "")
        return
    lines = []
    for r in rows:
        state = "FAILING" if r["failing"] else "retrying" if r["failing_since"] else "ok"
        lines.append(
            f"{r['application']}  {r['url']}  {state}  delivered={r['delivered']}"
            f"  statuses={','.join(r['statuses'] or ['all'])}"
            + (
                f"  since={r['failing_since']}  error={r['last_error']}"
                if r["failing_since"]
                else ""
            )
        )
    lines.append(f"{len(rows)} webhook{'' if len(rows) == 1 else 's'}")
    emit(False, None, "\n".join(lines))


@group.command("remove")
def remove(code: str, url: str, account: Account = "default", database: Database = None) -> None:
    """Remove a webhook endpoint (nothing more is sent to it)."""

    async def run(store: Store) -> bool:
        hook = await _hook(store, account, code, url)
        return await store.webhooks.remove(hook.app_id, hook.url)

    with_store(database, run)
    emit(False, None, f"removed {url}")


@group.command("test")
def send_test_event(
    code: str,
    url: str,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """POST a signed test event to a webhook endpoint now and say how it answered."""
    settings = load_settings(database)

    async def run(store: Store) -> str | None:
        return await hooks.send_test(settings, store, await _hook(store, account, code, url))

    error = with_store(database, run)
    emit(as_json, {"ok": error is None, "error": error}, "ok" if error is None else error)
    if error is not None:
        raise typer.Exit(1)


@group.command("replay")
def replay(
    code: str,
    url: str,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help='Send again from this time (UTC): "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD".',
        ),
    ],
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Send a webhook endpoint everything again from a time within retention."""
    settings = load_settings(database)
    try:
        start = parse_since(since, "--since")
    except ArgumentError as exc:
        fail(exc.message)

    async def run(store: Store) -> Webhook | None:
        hook = await _hook(store, account, code, url)
        oldest = window_start(store.clock(), settings.retention_days)
        if start < oldest:
            raise ConflictError("--since is before the retention window")
        return await store.webhooks.replay(hook.app_id, hook.url, start)

    found = with_store(database, run)
    assert found is not None
    data = shown(found)
    emit(as_json, data, f"{url} is sent everything again from {since}")


@commands.command("tail")
def tail(
    app: Annotated[
        str | None,
        typer.Option("--app", help="Only this application's events.", show_default=False),
    ] = None,
    hwid: Annotated[
        list[str] | None,
        typer.Option("--hwid", help="Only this device's (repeatable).", show_default=False),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", help="Only this message's.", show_default=False)
    ] = None,
    status: Statuses = None,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Print the trail's events as they happen (one JSON object a line with --json)."""
    settings = load_settings(database)
    require_database(settings)
    try:
        wanted = event_filter(
            account, None, application=app, hwids=hwid or [], message=message, statuses=status or []
        )
    except ValueError as exc:
        fail(str(exc))
    out = Console(highlight=False, soft_wrap=True)
    colour = out.is_terminal and not as_json

    async def run() -> None:
        store = open_store(settings.database)
        try:
            cursor = await store.stream.head()
            while True:
                page = await store.stream.read(cursor, wanted, 500)
                for item in page.items:
                    event = hooks.event_of(item)
                    if as_json:
                        sys.stdout.write(json.dumps(event) + "\n")
                        continue
                    line = (
                        f"{event['timestamp']}  {event['status']:9}  {event['application_code']}"
                        f"  {event['message_code']}  {event['hwid']}  {event['platform']}"
                        f"  {event['description']}"
                    )
                    if colour:
                        style = COLOURS.get(event["status"], "")
                        out.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line))
                    else:
                        sys.stdout.write(line + "\n")
                sys.stdout.flush()
                cursor = max(cursor, page.reached)
                if not page.more:
                    await asyncio.sleep(settings.webhook_poll_ms / 1000)
        finally:
            await store.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
