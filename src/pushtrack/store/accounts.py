"""Accounts, applications and API tokens: the transaction functions behind ``Store``'s
app and token methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pushtrack.domain import codes
from pushtrack.store.base import (
    App,
    ConflictError,
    TokenInfo,
    Tx,
)
from pushtrack.store.jsontext import dumps, loads

APP_COLUMNS = (
    "a.id, a.code, a.name, acc.name, a.tracking, a.open_logging, "
    "a.device_token_required, a.created_at"
)
APP_FROM = "applications a JOIN accounts acc ON acc.id = a.account_id"


def app_from_row(row: tuple[Any, ...]) -> App:
    return App(
        id=row[0],
        code=row[1],
        name=row[2],
        account=row[3],
        tracking=bool(row[4]),
        open_logging=bool(row[5]),
        device_token_required=bool(row[6]),
        created_at=row[7],
    )


def account_id(tx: Tx, name: str) -> int:
    row = tx.one("SELECT id FROM accounts WHERE name = ?", (name,))
    if row:
        return int(row[0])
    row = tx.one(
        "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id", (name, tx.now())
    )
    assert row is not None
    return int(row[0])


def create_app(
    tx: Tx, *, account: str, name: str, tracking: bool, open_logging: bool, token_required: bool
) -> App:
    acc = account_id(tx, account)
    code = codes.app_code()
    while tx.one("SELECT 1 FROM applications WHERE code = ?", (code,)):
        code = codes.app_code()
    tx.run(
        "INSERT INTO applications (code, account_id, name, tracking, open_logging,"
        " device_token_required, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (code, acc, name, int(tracking), int(open_logging), int(token_required), tx.now()),
    )
    app = get_app(tx, code)
    assert app is not None
    return app


def get_app(tx: Tx, code: str) -> App | None:
    row = tx.one(f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.code = ?", (code,))
    return app_from_row(row) if row else None


def has_accounts(tx: Tx) -> bool:
    return tx.one("SELECT 1 FROM accounts LIMIT 1") is not None


def list_apps(tx: Tx, account: str) -> list[App]:
    rows = tx.all(
        f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE acc.name = ? ORDER BY a.id", (account,)
    )
    return [app_from_row(r) for r in rows]


def all_apps(tx: Tx) -> list[App]:
    """Every application of every account (operator tools)."""
    return [app_from_row(r) for r in tx.all(f"SELECT {APP_COLUMNS} FROM {APP_FROM} ORDER BY a.id")]


TOKEN_COLUMNS = "t.id, acc.name, t.kind, t.prefix, t.apps, t.methods, t.created_at, t.revoked_at"


def _token_from_row(row: tuple[Any, ...]) -> TokenInfo:
    apps, methods = loads(row[4]), loads(row[5])
    return TokenInfo(
        id=row[0],
        account=row[1],
        kind=row[2],
        prefix=row[3],
        apps=frozenset(apps) if apps is not None else None,
        methods=frozenset(methods) if methods is not None else None,
        created_at=row[6],
        revoked=row[7] is not None,
    )


def create_token(
    tx: Tx,
    account: str,
    kind: str,
    token_hash: str,
    prefix: str,
    apps: Sequence[str] | None,
    methods: Sequence[str] | None,
) -> TokenInfo:
    acc = account_id(tx, account)
    if apps:
        known = {r[0] for r in tx.all("SELECT code FROM applications WHERE account_id = ?", (acc,))}
        missing = sorted(set(apps) - known)
        if missing:
            raise ConflictError(f"no application {', '.join(missing)} in account {account!r}")
    row = tx.one(
        "INSERT INTO api_tokens (account_id, kind, prefix, hash, apps, methods, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            acc,
            kind,
            prefix,
            token_hash,
            dumps(sorted(apps)) if apps else None,
            dumps(sorted(methods)) if methods else None,
            tx.now(),
        ),
    )
    assert row is not None
    found = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.id = ?",
        (row[0],),
    )
    assert found is not None
    return _token_from_row(found)


def find_token(tx: Tx, token_hash: str) -> TokenInfo | None:
    row = tx.one(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE t.hash = ?",
        (token_hash,),
    )
    return _token_from_row(row) if row else None


def list_tokens(tx: Tx, account: str) -> list[TokenInfo]:
    rows = tx.all(
        f"SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN accounts acc ON acc.id = t.account_id"
        " WHERE acc.name = ? ORDER BY t.id",
        (account,),
    )
    return [_token_from_row(r) for r in rows]


def revoke_tokens(tx: Tx, account: str, prefix: str) -> int:
    return tx.run(
        "UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND prefix = ?"
        " AND account_id = (SELECT id FROM accounts WHERE name = ?)",
        (tx.now(), prefix, account),
    )
