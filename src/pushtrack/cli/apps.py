"""``pushtrack app create`` and ``pushtrack app list``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pushtrack.cli.common import Account, AsJson, Database, console, emit, fail, with_store
from pushtrack.domain.timeutil import to_wire

#: Commands of the ``app`` group (root.py adds gateways.py's and devices.py's beside them).
app_commands = typer.Typer()


@app_commands.command("create")
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
        fail("NAME must not be empty")
    created = with_store(
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
    emit(as_json, {"code": created.code, "name": created.name}, created.code)


@app_commands.command("list")
def app_list(
    account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """List the applications of an account."""
    apps = with_store(database, lambda s: s.list_apps(account))
    if as_json:
        emit(
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
            _on_off(a.tracking),
            _on_off(a.open_logging),
            "required" if a.device_token_required else "optional",
            to_wire(a.created_at),
        )
    console.print(table)


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"
