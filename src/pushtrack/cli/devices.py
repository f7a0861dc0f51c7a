"""``pushtrack app device``: one device as its application's sender sees it;
``pushtrack devices dead``: the dead-token ledger."""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any

import msgspec
import typer

from pushtrack.api.deadtokens import entry, parse_since
from pushtrack.api.errors import ArgumentError
from pushtrack.cli.common import (
    Account,
    AsJson,
    Database,
    RetentionDays,
    emit,
    fail,
    load_settings,
    with_store,
)
from pushtrack.domain.platforms import name_of
from pushtrack.domain.timeutil import to_wire, window_start
from pushtrack.store import Store
from pushtrack.store.base import ConflictError, DeviceView, LogQuery, LogRow
from pushtrack.store.deadtokens import DeadToken
from pushtrack.store.trail import DeliveryEvent, delivery_event

#: ``pushtrack app device`` (root.py adds it to the ``app`` group).
app_commands = typer.Typer()
#: ``pushtrack devices``.
group = typer.Typer(help="Devices across applications.", no_args_is_help=True)

#: Entries read per round trip while listing the ledger.
_PAGE = 1000


@app_commands.command("device")
def show_device(
    code: str,
    hwid: str,
    trail: Annotated[
        int,
        typer.Option(
            "--trail",
            help="Also its timeline: the last N events of its deliveries (with the"
            " gateway's id, tries and failure class).",
            show_default=False,
        ),
    ] = 0,
    account: Account = "default",
    retention_days: RetentionDays = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Show a device of an application: its registration, badge and last open."""
    settings = load_settings(database, retention_days=retention_days)
    if trail < 0:
        fail("--trail must be 0 or more")

    async def lookup(store: Store) -> tuple[DeviceView, list[DeliveryEvent]]:
        for app in await store.list_apps(account):
            if app.code == code:
                found = await store.devices.view(app, hwid)
                if found is None:
                    raise ConflictError(f"no device {hwid!r} in application {code}")
                events = await _timeline(store, app.code, hwid, trail, settings.retention_days)
                return found, events
        raise ConflictError(f"no application {code} in account {account!r}")

    async def _timeline(
        store: Store, app_code: str, hwid: str, last: int, days: int
    ) -> list[DeliveryEvent]:
        rows: deque[LogRow] = deque(maxlen=last)
        if not last:
            return []
        q = LogQuery(
            account=account,
            application_code=app_code,
            hwids=(hwid,),
            date_from=window_start(store.clock(), days),
            limit=_PAGE,
        )
        while True:
            page = await store.message_log(q)
            rows.extend(page)
            if len(page) < _PAGE:
                return [delivery_event(r) for r in rows]
            q = msgspec.structs.replace(q, after=(page[-1].ts, page[-1].event_id))

    d, events = with_store(database, lookup)
    platform = name_of(d.device_type)
    data: dict[str, Any] = {
        "hwid": d.hwid,
        "platform": platform,
        "push_token": d.push_token,
        "subscribed": d.subscribed,
        "language": d.language,
        "timezone": d.tz_name or d.timezone,
        "user_id": d.user_id,
        "app_version": d.app_version,
        "device_model": d.device_model,
        "os_version": d.os_version,
        "badge": d.badge,
        "last_open": to_wire(d.last_open) if d.last_open is not None else None,
        "registered": to_wire(d.created_at),
        "updated": to_wire(d.updated_at),
    }
    text = "\n".join(f"{key:12} {'' if value is None else value}" for key, value in data.items())
    if trail:
        data["trail"] = [msgspec.to_builtins(e) for e in events]
        text += "\n" + "\n".join(_event_line(e) for e in events)
    emit(as_json, data, text)


def _event_line(e: DeliveryEvent) -> str:
    extra = [
        f"{k}={v}"
        for k, v in (
            ("gateway_id", e.gateway_id),
            ("attempt", e.attempt or None),
            ("class", e.failure_class),
        )
        if v is not None
    ]
    return "  ".join(
        (e.timestamp, e.message_code, e.tracking_code, e.status, e.description, *extra)
    )


@group.command("dead")
def dead_devices(
    app: Annotated[
        str | None,
        typer.Option("--app", help="Only this application's devices.", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help='Found at or after this time (UTC): "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD".',
            show_default=False,
        ),
    ] = None,
    account: Account = "default",
    retention_days: RetentionDays = None,
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """List the dead-token ledger: devices a gateway's answer unsubscribed (token masked,
    reason, when, and the message that found it), oldest first."""
    settings = load_settings(database, retention_days=retention_days)
    try:
        after = parse_since(since, "--since") if since is not None else None
    except ArgumentError as exc:
        fail(exc.message)

    async def run(store: Store) -> list[DeadToken]:
        if app is not None and app not in {a.code for a in await store.list_apps(account)}:
            raise ConflictError(f"no application {app} in account {account!r}")
        start = window_start(store.clock(), settings.retention_days)
        start = max(start, after) if after is not None else start
        found: list[DeadToken] = []
        position = None
        while True:
            page = await store.dead_tokens.list(
                account, None, app_code=app, since=start, after=position, limit=_PAGE
            )
            found += page
            if len(page) < _PAGE:
                return found
            position = (page[-1].found_at, page[-1].id)

    rows = [entry(t) for t in with_store(database, run)]
    if as_json:
        emit(True, rows, "")
        return
    lines = [
        "  ".join(
            (
                r["found_at"],
                r["application_code"],
                r["hwid"],
                r["platform"],
                r["push_token"],
                r["reason"],
                r["message_code"] or "-",
            )
        )
        for r in rows
    ]
    lines.append(f"{len(rows):,} dead token{'' if len(rows) == 1 else 's'}")
    emit(False, None, "\n".join(lines))
