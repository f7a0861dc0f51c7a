"""``pushtrack token create|list|revoke``: API tokens, printed once, stored hashed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pushtrack.api import auth
from pushtrack.cli.common import Account, AsJson, Database, console, emit, fail, with_store
from pushtrack.domain import codes
from pushtrack.domain.timeutil import to_wire

group = typer.Typer(help="API tokens.", no_args_is_help=True)


@group.command("create")
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
        fail("--kind must be server or device")
    if method:
        from pushtrack.api.app import method_names

        unknown = sorted(set(method) - method_names())
        if unknown:
            known = ", ".join(sorted(method_names()))
            fail(f"unknown method(s) {', '.join(unknown)}; known: {known}")
    raw = codes.secret_token()
    with_store(
        database,
        lambda s: s.create_token(
            account, kind, auth.hash_token(raw), auth.prefix_of(raw), app or None, method or None
        ),
    )
    emit(as_json, {"token": raw}, raw)


@group.command("list")
def token_list(
    account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """List tokens (prefixes only; tokens themselves are never stored)."""
    tokens = with_store(database, lambda s: s.list_tokens(account))
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
        emit(True, rows, "")
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


@group.command("revoke")
def token_revoke(
    prefix: str, account: Account = "default", database: Database = None, as_json: AsJson = False
) -> None:
    """Revoke the tokens whose printed prefix is PREFIX."""
    if len(prefix) < 8:
        fail("PREFIX must be the 8 characters `token list` shows")
    n = with_store(database, lambda s: s.revoke_tokens(account, prefix[:8]))
    if n == 0:
        fail(f"no active token with prefix {prefix[:8]}")
    emit(as_json, {"revoked": n}, f"revoked {n} token(s)")
