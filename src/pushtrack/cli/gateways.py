"""``pushtrack app set-gateway`` and ``pushtrack app gateways``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pushtrack.cli.common import (
    Account,
    AsJson,
    Database,
    console,
    emit,
    fail,
    load_settings,
    require_database,
    with_store,
)
from pushtrack.domain.platforms import Platform, from_name, name_of
from pushtrack.domain.timeutil import to_wire
from pushtrack.sealing import Sealer, SealingError, plain_fields
from pushtrack.store.base import ConflictError
from pushtrack.store.dispatch import GatewayState

#: Commands of the ``app`` group (root.py adds them to it).
app_commands = typer.Typer()

#: Which gateway kinds can serve which platforms (the sandbox serves any).
SERVES: dict[str, frozenset[Platform]] = {
    "apns": frozenset({Platform.IOS, Platform.MACOS, Platform.SAFARI}),
    "fcm": frozenset({Platform.ANDROID, Platform.IOS, Platform.HUAWEI, Platform.AMAZON}),
    "webpush": frozenset({Platform.CHROME, Platform.FIREFOX}),
    "sandbox": frozenset(Platform),
}
#: The setting a --key-file fills, per kind.
KEY_SETTING = {"apns": "key", "fcm": "service_account", "webpush": "vapid_private_key"}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@app_commands.command("set-gateway")
def set_gateway(
    code: str,
    platform: Annotated[str, typer.Option("--platform", help="ios, android, chrome, ...")],
    kind: Annotated[str, typer.Option("--kind", help="apns, fcm, webpush or sandbox.")],
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE gateway setting (repeatable; JSON values ok)."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="JSON file with the gateway settings.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="APNs .p8 key, FCM service-account JSON or VAPID key."),
    ] = None,
    account: Account = "default",
    database: Database = None,
    as_json: AsJson = False,
) -> None:
    """Set the gateway that sends an application's pushes to one platform.

    Secrets are stored and never printed back.
    """
    from pushtrack.delivery.registry import KINDS, parse_config  # loads the crypto stack

    target = from_name(platform)
    if target is None:
        fail(f"unknown platform {platform!r}")
    if kind not in KINDS:
        fail(f"--kind must be one of {', '.join(KINDS)}")
    if target not in SERVES[kind]:
        fail(f"a {kind} gateway cannot send to {target.api_name}")
    config: dict[str, Any] = {}
    try:
        if config_file is not None:
            loaded = json.loads(config_file.read_text())
            if not isinstance(loaded, dict):
                fail("--config must hold a JSON object")
            config.update(loaded)
        if key_file is not None:
            if kind not in KEY_SETTING:
                fail(f"a {kind} gateway takes no key file")
            config[KEY_SETTING[kind]] = key_file.read_text()
    except (OSError, ValueError) as exc:
        fail(f"cannot read settings: {exc}")
    for item in setting or ():
        name, sep, text = item.partition("=")
        if not sep or not name:
            fail(f"--set takes KEY=VALUE, not {item!r}")
        config[name.strip()] = _value(text)
    try:
        parse_config(kind, config)
    except ValueError as exc:
        fail(str(exc))
    if plain_fields(kind, config):
        settings = load_settings(database)
        require_database(settings)  # before a key file is made beside a mistyped path
        try:
            sealer = Sealer.load(settings, create=True)
        except (SealingError, OSError) as exc:
            fail(str(exc))
        if sealer is None:
            fail(
                "gateway keys are stored encrypted: set PUSHTRACK_SECRET_KEY (or secret_key_file)"
                " to a key from `pushtrack secrets new-key`, the same for every process"
            )
        config = sealer.seal(kind, config)
    with_store(
        database,
        lambda s: s.dispatch.set_gateway(account, code, int(target), kind, config),
    )
    emit(
        as_json,
        {"application": code, "platform": target.api_name, "kind": kind},
        f"{code}: {target.api_name} pushes go through {kind}",
    )


@app_commands.command("gateways")
def list_gateways(
    code: str, account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """Show each platform's gateway and whether it is paused; no secrets shown.

    A gateway is paused when it refused the application's credentials."""

    async def lookup(store: Any) -> dict[int, GatewayState]:
        for app in await store.list_apps(account):
            if app.code == code:
                states: dict[int, GatewayState] = await store.dispatch.gateway_states(app.id)
                return states
        raise ConflictError(f"no application {code} in account {account!r}")

    states = with_store(database, lookup)
    rows: dict[str, dict[str, str]] = {}
    for platform, state in sorted(states.items()):
        row = {"kind": state.kind, "status": "active"}
        if state.pause is not None:
            row["status"] = "paused"
            row["paused_since"] = to_wire(state.pause.since) + " UTC"
            row["reason"] = state.pause.reason
        rows[name_of(platform)] = row
    if as_json:
        emit(True, rows, "")
        return
    table = Table("platform", "gateway", "status")
    for name, row in rows.items():
        status = row["status"]
        if status == "paused":
            status = (
                f"[bold red]PAUSED[/] since {row['paused_since']}: {row['reason']}"
                " (deliveries wait; fix the settings with set-gateway)"
            )
        table.add_row(name, row["kind"], status)
    console.print(table)
