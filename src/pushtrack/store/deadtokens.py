"""The dead-token ledger: every device a gateway's answer unsubscribed.

``store/dispatch.py`` writes it (in the transaction that records the answer and
unsubscribes the device); this reads it for ``pushtrack devices dead`` and the
``deadTokens:list`` method, and retention trims it with the rest of the trail.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import codes
from pushtrack.store.base import Engine, Tx
from pushtrack.store.tracking import code_of, tracking_key


class DeadToken(msgspec.Struct, frozen=True):
    """One device a gateway said had a dead token."""

    #: Its place in the ledger (found_at, id): pages go on after it.
    id: int
    found_at: int
    application_code: str
    hwid: str
    #: The token as the device registered it (show it masked: ``mask_token``).
    push_token: str
    platform: int
    #: The gateway's reason (APNs ``Unregistered``, FCM ``UNREGISTERED``, Web Push ``Gone``, ...)
    reason: str
    #: The message whose delivery found it, and that delivery's tracking code (None once
    #: retention removed them).
    message_code: str | None
    message_id: int | None
    tracking_code: str | None


def list_dead(
    tx: Tx,
    *,
    account: str,
    apps: AbstractSet[str] | None,
    app_code: str | None,
    since: int,
    after: tuple[int, int] | None,
    limit: int,
) -> list[DeadToken]:
    """The ledger's entries of an account's applications found at or after ``since``, in
    the order they were found, from after the position ``after``."""
    where = ["acc.name = ?", "t.found_at >= ?"]
    params: list[Any] = [account, since]
    if apps is not None:
        where.append(f"a.code IN ({','.join('?' * len(apps))})")
        params.extend(sorted(apps))
    if app_code is not None:
        where.append("a.code = ?")
        params.append(app_code)
    if after is not None:
        where.append("(t.found_at, t.id) > (?, ?)")
        params.extend(after)
    rows = tx.all_as(
        _DeadRow,
        "SELECT t.id, t.found_at, a.code AS application_code, t.hwid, t.push_token, t.platform,"
        " t.reason, m.code AS message_code, m.id AS message_id, d.id AS delivery_id,"
        " d.legacy_code FROM dead_tokens t JOIN applications a ON a.id = t.app_id"
        " JOIN accounts acc ON acc.id = a.account_id"
        " LEFT JOIN messages m ON m.id = t.message_id"
        " LEFT JOIN deliveries d ON d.id = t.delivery_id"
        f" WHERE {' AND '.join(where)} ORDER BY t.found_at, t.id LIMIT ?",
        (*params, limit),
    )
    key = tracking_key(tx) if rows else b""
    return [
        DeadToken(
            id=r.id,
            found_at=r.found_at,
            application_code=r.application_code,
            hwid=r.hwid,
            push_token=r.push_token,
            platform=r.platform,
            reason=r.reason,
            message_code=r.message_code,
            message_id=(
                codes.shown_message_id(key, r.message_id) if r.message_id is not None else None
            ),
            tracking_code=(
                code_of(key, r.delivery_id, r.legacy_code) if r.delivery_id is not None else None
            ),
        )
        for r in rows
    ]


class _DeadRow(NamedTuple):
    """A ledger entry as ``list_dead`` reads it (its message and delivery NULL once
    retention removed them)."""

    id: int
    found_at: int
    application_code: str
    hwid: str
    push_token: str
    platform: int
    reason: str
    message_code: str | None
    message_id: int | None
    delivery_id: int | None
    legacy_code: str | None


def delete_dead_tokens(tx: Tx, *, before: int, limit: int) -> int:
    """Remove up to ``limit`` ledger entries found before ``before`` (retention)."""
    return tx.run(
        "DELETE FROM dead_tokens WHERE id IN (SELECT id FROM dead_tokens WHERE found_at < ?"
        " LIMIT ?)",
        (before, limit),
    )


def mask_token(token: str) -> str:
    """A token as listings show it: enough to recognise, not enough to send with.

    A Web Push subscription (its JSON, or its endpoint alone) shows its push service's
    URL with the end of its path, never its keys; other tokens their first six and
    last four characters.
    """
    if token.startswith("{"):
        try:
            endpoint = msgspec.json.decode(token).get("endpoint")
        except (msgspec.DecodeError, AttributeError):
            endpoint = None
        token = endpoint if isinstance(endpoint, str) else "{…}"
    scheme, sep, rest = token.partition("://")
    if sep:
        host = rest.split("/", 1)[0]
        tail = rest[-4:] if len(rest) > len(host) + 8 else ""
        return f"{scheme}://{host}/…{tail}"
    if len(token) <= 12:
        return "…" + token[-2:]
    return f"{token[:6]}…{token[-4:]}"


class DeadTokenStore:
    """The dead-token ledger of the ``Store``: ``store.dead_tokens``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def list(
        self,
        account: str,
        apps: AbstractSet[str] | None,
        *,
        app_code: str | None = None,
        since: int = 0,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[DeadToken]:
        return await self.engine.read(
            partial(
                list_dead,
                account=account,
                apps=apps,
                app_code=app_code,
                since=since,
                after=after,
                limit=limit,
            )
        )
