"""``pushtrack app device``: one device as its application's sender sees it."""

from __future__ import annotations

from typing import Any

from pushtrack.cli import Account, AsJson, Database, _emit, _with_store, app_cli
from pushtrack.domain.platforms import name_of
from pushtrack.domain.timeutil import to_wire
from pushtrack.store import Store
from pushtrack.store.base import ConflictError, DeviceView


@app_cli.command("device")
def show_device(
    code: str,
    hwid: str,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Show a device of an application: its registration, badge and last open."""

    async def lookup(store: Store) -> DeviceView:
        for app in await store.list_apps(account):
            if app.code == code:
                found = await store.devices.view(app, hwid)
                if found is None:
                    raise ConflictError(f"no device {hwid!r} in application {code}")
                return found
        raise ConflictError(f"no application {code} in account {account!r}")

    d = _with_store(database, lookup)
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
    _emit(as_json, data, text)
