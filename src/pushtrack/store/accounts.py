"""Accounts, applications and API tokens: the transaction functions behind ``Store``'s
app and token methods."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pushtrack.domain import codes
from pushtrack.store.base import (
    App,
    ConflictError,
    TokenInfo,
    Tx,
)
from pushtrack.store.jsontext import dumps, loads

APP_COLUMNS = (
    "a.id, a.code, a.name, acc.name AS account, a.tracking, a.open_logging,"
    " a.device_token_required, a.created_at"
)
APP_FROM = "applications a JOIN accounts acc ON acc.id = a.account_id"


class AppRow(NamedTuple):
    """An application as ``APP_COLUMNS`` reads it."""

    id: int
    code: str
    name: str
    account: str
    tracking: int
    open_logging: int
    device_token_required: int
    created_at: int


def app_from_row(row: AppRow) -> App:
    return App(
        id=row.id,
        code=row.code,
        name=row.name,
        account=row.account,
        tracking=bool(row.tracking),
        open_logging=bool(row.open_logging),
        device_token_required=bool(row.device_token_required),
        created_at=row.created_at,
    )


def account_id(tx: Tx, name: str) -> int:
    found = tx.scalar("SELECT id FROM accounts WHERE name = ?", (name,))
    if found is not None:
        return int(found)
    made = tx.scalar(
        "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING id", (name, tx.now())
    )
    assert made is not None
    return int(made)


def create_app(
    tx: Tx, *, account: str, name: str, tracking: bool, open_logging: bool, token_required: bool
) -> App:
    acc = account_id(tx, account)
    code = codes.app_code()
    while tx.scalar("SELECT 1 FROM applications WHERE code = ?", (code,)) is not None:
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
    row = tx.one_as(AppRow, f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE a.code = ?", (code,))
    return app_from_row(row) if row else None


def has_accounts(tx: Tx) -> bool:
    return tx.scalar("SELECT 1 FROM accounts LIMIT 1") is not None


def list_apps(tx: Tx, account: str) -> list[App]:
    rows = tx.all_as(
        AppRow, f"SELECT {APP_COLUMNS} FROM {APP_FROM} WHERE acc.name = ? ORDER BY a.id", (account,)
    )
    return [app_from_row(r) for r in rows]


def all_apps(tx: Tx) -> list[App]:
    """Every application of every account (operator tools)."""
    rows = tx.all_as(AppRow, f"SELECT {APP_COLUMNS} FROM {APP_FROM} ORDER BY a.id")
    return [app_from_row(r) for r in rows]


TOKEN_COLUMNS = (
    "t.id, acc.name AS account, t.kind, t.prefix, t.apps, t.methods, t.created_at, t.revoked_at"
)
TOKEN_FROM = "api_tokens t JOIN accounts acc ON acc.id = t.account_id"


class _TokenRow(NamedTuple):
    id: int
    account: str
    kind: str
    prefix: str
    #: JSON lists, or NULL
    apps: str | None
    methods: str | None
    created_at: int
    revoked_at: int | None


def _token_from_row(row: _TokenRow) -> TokenInfo:
    apps, methods = loads(row.apps), loads(row.methods)
    return TokenInfo(
        id=row.id,
        account=row.account,
        kind=row.kind,
        prefix=row.prefix,
        apps=frozenset(apps) if apps is not None else None,
        methods=frozenset(methods) if methods is not None else None,
        created_at=row.created_at,
        revoked=row.revoked_at is not None,
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
        known = set(tx.column("SELECT code FROM applications WHERE account_id = ?", (acc,)))
        missing = sorted(set(apps) - known)
        if missing:
            raise ConflictError(f"no application {', '.join(missing)} in account {account!r}")
    token_id = tx.scalar(
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
    assert token_id is not None
    found = tx.one_as(
        _TokenRow, f"SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.id = ?", (token_id,)
    )
    assert found is not None
    return _token_from_row(found)


def find_token(tx: Tx, token_hash: str) -> TokenInfo | None:
    row = tx.one_as(
        _TokenRow, f"SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.hash = ?", (token_hash,)
    )
    return _token_from_row(row) if row else None


def list_tokens(tx: Tx, account: str) -> list[TokenInfo]:
    rows = tx.all_as(
        _TokenRow,
        f"SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE acc.name = ? ORDER BY t.id",
        (account,),
    )
    return [_token_from_row(r) for r in rows]


def revoke_tokens(tx: Tx, account: str, prefix: str) -> int:
    return tx.run(
        "UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL AND prefix = ?"
        " AND account_id = (SELECT id FROM accounts WHERE name = ?)",
        (tx.now(), prefix, account),
    )
