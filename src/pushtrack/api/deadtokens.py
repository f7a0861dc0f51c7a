"""(ours) devices/deadTokens: the dead-token ledger, every device a gateway's answer
unsubscribed (APNs 410, FCM ``UNREGISTERED`` or an invalid registration token, Web
Push 404/410), with the token masked, the reason, when, and the message that found it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.platforms import name_of
from pushtrack.domain.timeutil import parse_day, parse_wire, to_wire, window_start
from pushtrack.store.deadtokens import DeadToken, mask_token

MAX_LIMIT = 1000
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class DeadTokens(msgspec.Struct, forbid_unknown_fields=True):
    #: one application's entries (else those of every application the token may use)
    application: Code | None = None
    #: entries found at or after this time ("YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD", UTC)
    date_from: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 100
    pagination_token: str | None = None


def encode_position(found_at: int, entry_id: int) -> str:
    raw = msgspec.json.encode([found_at, entry_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_position(token: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        found_at, entry_id = msgspec.json.decode(raw, type=tuple[Id, Id])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise ArgumentError("pagination_token: not a token this service issued") from None
    return found_at, entry_id


def parse_since(value: str, name: str) -> int:
    """A lower bound: "YYYY-MM-DD HH:MM:SS" or a whole day "YYYY-MM-DD" (UTC), in µs."""
    try:
        return parse_wire(value)
    except ValueError:
        pass
    try:
        return parse_day(value)
    except ValueError:
        raise ArgumentError(
            f'{name}: expected "YYYY-MM-DD HH:MM:SS" or "YYYY-MM-DD", got {value!r}'
        ) from None


def entry(t: DeadToken) -> dict[str, Any]:
    """One ledger entry as listings show it (the token masked)."""
    return {
        "found_at": to_wire(t.found_at),
        "application_code": t.application_code,
        "hwid": t.hwid,
        "push_token": mask_token(t.push_token),
        "platform": name_of(t.platform),
        "reason": t.reason,
        "message_code": t.message_code,
        "message_id": t.message_id,
        "tracking_code": t.tracking_code,
    }


async def dead_tokens(call: Call, r: DeadTokens) -> dict[str, Any]:
    assert call.token is not None
    app_code = (await call.app_for(r.application)).code if r.application is not None else None
    since = window_start(call.ctx.store_clock(), call.ctx.settings.retention_days)
    if r.date_from is not None:
        since = max(since, parse_since(r.date_from, "date_from"))
    after = decode_position(r.pagination_token) if r.pagination_token else None
    found = await call.ctx.store.dead_tokens.list(
        call.token.account,
        call.token.apps,
        app_code=app_code,
        since=since,
        after=after,
        limit=r.limit + 1,
    )
    more = len(found) > r.limit
    found = found[: r.limit]
    token = encode_position(found[-1].found_at, found[-1].id) if more and found else None
    return {"items": [entry(t) for t in found], "pagination_token": token}
