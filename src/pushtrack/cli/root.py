"""The ``pushtrack`` command: ``--version``, and the commands of the other modules
of this package put together in the order ``--help`` lists them."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from pushtrack.cli import apps, devices, doctor, exports, gateways, secrets, serve, tokens, webhooks

cli = typer.Typer(
    name="pushtrack",
    help="Self-hosted push notifications with a per-device delivery audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


#: ``pushtrack app``: applications, their gateways, a device of one.
app_group = typer.Typer(help="Applications.", no_args_is_help=True)
app_group.add_typer(apps.app_commands)
app_group.add_typer(devices.app_commands)
app_group.add_typer(gateways.app_commands)

# A Typer added without a name gives its commands to the parent.
cli.add_typer(serve.commands)  # serve, demo, worker
cli.add_typer(doctor.commands)  # doctor
cli.add_typer(exports.commands)  # export, stats, purge
cli.add_typer(webhooks.commands)  # tail
cli.add_typer(app_group, name="app")
cli.add_typer(tokens.group, name="token")
cli.add_typer(devices.group, name="devices")
cli.add_typer(secrets.group, name="secrets")
cli.add_typer(webhooks.group, name="webhook")
