"""Tenant isolation, method by method: a caller never reaches another account's
resources, nor an application its token is restricted from, and cannot even tell
whether such a resource exists.

Each method is called twice with the same caller: once naming a foreign resource
that exists, once naming one that does not. The two answers must be refusals
(or empty results) and identical once the identifiers are masked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import Service


@dataclass(frozen=True)
class Resources:
    """What a caller might name: everything of one application."""

    app: str
    hwid: str
    user: str
    tag: str
    filter: str
    message: str
    #: the message's id as messages:list and getMessageLog show it
    message_id: int
    tracking_code: str
    hash: str
    campaign: str
    export_request: str
    stats_request: str
    webhook: str


def _code(like: str) -> str:
    """A code of the same shape as ``like`` that names nothing."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    out = "".join(
        alphabet[(i * 7 + ord(c)) % len(alphabet)] if c.isalnum() else c for i, c in enumerate(like)
    )
    return out if out != like else out[::-1]


def _populate(svc: Service, app: str, tag: str) -> Resources:
    """A device, tag, filter, message, campaign and two result requests in ``app``."""
    view = _view_of(svc, app)
    hwid, user, campaign = f"iso-dev-{tag}", f"iso-user-{tag}", f"iso-camp-{tag}"
    view.register(hwid, userId=user, tags={tag: "v"})
    out = view.server(
        "createFilter",
        name=f"iso-filter-{tag}",
        application=app,
        filter_expression=f'T("{tag}", EQ, "v")',
    )
    assert out["status_code"] == 200, out
    sent = view.send(devices=[hwid], campaign=campaign)
    message, tracking_code = sent["Messages"][0], sent["TrackingCodes"][0]
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    export = view.server("getTrackingLog", date=today)
    stats = view.server("getMsgStats", message=message, application=None)
    assert export["status_code"] == stats["status_code"] == 200, (export, stats)
    webhook = f"https://hooks.example.com/iso-{tag}"
    added = view.v2("webhooks/addWebhook", {"application": app, "url": webhook})
    assert added.status_code == 200, added.text
    listed = view.v2(
        "messages:list", {"filters": {"application": app, "messages_codes": [message]}}
    )
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    return Resources(
        app=app,
        hwid=hwid,
        user=user,
        tag=tag,
        filter=f"iso-filter-{tag}",
        message=message,
        message_id=int(item["id"]),
        tracking_code=tracking_code,
        hash=view.hash_of(tracking_code),
        campaign=campaign,
        export_request=export["response"]["request_id"],
        stats_request=stats["response"]["request_id"],
        webhook=webhook,
    )


def _view_of(svc: Service, app_code: str) -> Service:
    from dataclasses import replace

    rows = svc.db.rows("SELECT name FROM applications WHERE code = ?", (app_code,))
    assert rows
    app = next(a for a in _apps(svc) if a.code == app_code)
    return replace(svc, app=app)


def _apps(svc: Service) -> list[Any]:
    from tests.support import run

    return list(run(svc.store.list_apps(svc.account)))


def _missing(r: Resources) -> Resources:
    """The same shapes, naming nothing that exists."""
    return Resources(
        app=_code(r.app),
        hwid=r.hwid + "-missing",
        user=r.user + "-missing",
        tag=r.tag + "missing",
        filter=r.filter + "-missing",
        message=_code(r.message),
        message_id=r.message_id ^ 0x5A5A5A5A5A,
        tracking_code=_code(r.tracking_code),
        hash=_code(r.hash),
        campaign=r.campaign + "-missing",
        export_request=_code(r.export_request),
        stats_request=_code(r.stats_request),
        webhook=r.webhook + "-missing",
    )


#: Each server method, with a request naming the resources ``r``.
SERVER: dict[str, Callable[[Resources], dict[str, Any]]] = {
    "addTag": lambda r: {"application": r.app, "tag": {"name": "x-tag", "type": 2}},
    "listTags": lambda r: {"application": r.app},
    "deleteTag": lambda r: {"application": r.app, "tag": r.tag},
    "createFilter": lambda r: {
        "name": "x-filter",
        "application": r.app,
        "filter_expression": f'T("{r.tag}", EQ, "v")',
    },
    "listFilters": lambda r: {"application": r.app},
    "deleteFilter": lambda r: {"name": r.filter},
    "getEventStatistics": lambda r: {
        "application": r.app,
        "event": "x",
        "date_from": "2026-01-01 00:00:00",
        "date_to": "2026-01-02 00:00:00",
    },
    "createMessage": lambda r: {
        "application": r.app,
        "notifications": [{"content": "x", "devices": [r.hwid]}],
    },
    "createMessage/filter": lambda r: {
        "application": r.app,
        "notifications": [{"content": "x", "filter": r.filter}],
    },
    "createTargetedMessage": lambda r: {
        "content": "x",
        "devices_filter": f'A("{r.app}")',
    },
    "deleteMessage": lambda r: {"message": r.message},
    "getTrackingLog": lambda r: {"application": r.app, "date": "2026-11-27"},
    "getResults/export": lambda r: {"request_id": r.export_request},
    "getResults/stats": lambda r: {"request_id": r.stats_request},
    "getMsgStats": lambda r: {"message": r.message},
}

V2: dict[str, Callable[[Resources], dict[str, Any]]] = {
    "statistics/getMessageLog/message": lambda r: {"message_code": r.message},
    "statistics/getMessageLog/message_id": lambda r: {"message_id": r.message_id},
    "statistics/getMessageLog/campaign": lambda r: {"campaign_code": r.campaign},
    "statistics/getMessageLog/tracking": lambda r: {"tracking_code": r.tracking_code},
    "statistics/getMessageLog/hwid": lambda r: {"hwid": r.hwid},
    "statistics/getMessageLog/user": lambda r: {"user_id": r.user},
    "statistics/getMessageLog/app": lambda r: {
        "application_code": r.app,
        "date_from": "2026-11-01 00:00:00",
        "date_to": "2026-11-30 00:00:00",
    },
    "statistics/messages/totalsByIntervals": lambda r: {
        "message_code": r.message,
        "interval": "hour",
        "date_from": "2026-11-01 00:00:00",
        "date_to": "2026-11-30 00:00:00",
    },
    "messages:list": lambda r: {"filters": {"application": r.app, "messages_codes": [r.message]}},
    "messages:list/ids": lambda r: {
        "filters": {"application": r.app, "messages_ids": [r.message_id]}
    },
    "devices/deadTokens": lambda r: {"application": r.app},
    "webhooks/addWebhook": lambda r: {"application": r.app, "url": "https://hooks.example.com/x"},
    "webhooks/listWebhooks": lambda r: {"application": r.app},
    "webhooks/removeWebhook": lambda r: {"application": r.app, "url": r.webhook},
    "webhooks/testWebhook": lambda r: {"application": r.app, "url": r.webhook},
    "webhooks/replayWebhook": lambda r: {
        "application": r.app,
        "url": r.webhook,
        "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    },
    # GET, its parameters in the query (``_call``)
    "events/stream": lambda r: {"application": r.app},
}

#: Device methods, with a request naming the resources ``r``.
DEVICE: dict[str, Callable[[Resources], dict[str, Any]]] = {
    "registerDevice": lambda r: {
        "application": r.app,
        "hwid": r.hwid,
        "device_type": 1,
        "push_token": "x-token",
    },
    "unregisterDevice": lambda r: {"application": r.app, "hwid": r.hwid},
    "pushStat": lambda r: {"application": r.app, "hwid": r.hwid, "hash": r.hash},
    "messageDeliveryEvent": lambda r: {"application": r.app, "hwid": r.hwid, "hash": r.hash},
    "applicationOpen": lambda r: {"application": r.app, "hwid": r.hwid},
    "registerUser": lambda r: {"application": r.app, "hwid": r.hwid, "userId": "x-user"},
    "setBadge": lambda r: {"application": r.app, "hwid": r.hwid, "badge": 3},
    "checkDevice": lambda r: {"application": r.app, "hwid": r.hwid},
    "postEvent": lambda r: {"application": r.app, "hwid": r.hwid, "event": "x", "attributes": {}},
    "setTags": lambda r: {"application": r.app, "hwid": r.hwid, "tags": {r.tag: "w"}},
    "getTags": lambda r: {"application": r.app, "hwid": r.hwid},
}


#: Identifiers a call may make (a new message's code, tracking codes, request ids).
_MADE = re.compile(
    r"T-(?:[0-9A-F]{8}-){3}[0-9A-F]{8}|[0-9A-F]{4}-[0-9A-F]{8}-[0-9A-F]{8}|\b[0-9a-f]{32}\b"
)


def _mask(text: str, *resources: Resources) -> str:
    values = sorted(
        ((str(value), name) for r in resources for name, value in vars(r).items()),
        key=lambda vn: -len(vn[0]),
    )
    for value, name in values:
        text = text.replace(value, f"<{name}>")
    return _MADE.sub("<made>", text)


@dataclass
class World:
    svc: Service
    #: an account's unrestricted server token, and its device token
    a_server: str
    a_device: str
    #: the same account's tokens restricted to its first application
    a1_server: str
    a1_device: str
    #: resources of the first account's second application and of another account
    a2: Resources
    b1: Resources


#: The hwid of a device in the callers' own (first) application.
OWN_HWID = "iso-own-device"


@pytest.fixture(scope="module")
def world(shared: Service) -> World:
    a = shared.fresh_account()
    a2_app = a.new_app("a2")
    a2 = _populate(a, a2_app.code, "a2tag")
    b = shared.fresh_account()
    b1 = _populate(b, b.app.code, "b1tag")
    a.register(OWN_HWID)  # a device of the callers' own application
    return World(
        svc=a,
        a_server=a.server_token,
        a_device=a.device_token,
        a1_server=a.make_token("server", apps=[a.app.code]),
        a1_device=a.make_token("device", apps=[a.app.code]),
        a2=a2,
        b1=b1,
    )


def _cases(world_attr: str) -> list[tuple[str, str]]:
    return [(world_attr, m) for m in [*SERVER, *V2, *DEVICE]]


def _stream(svc: Service, token: str, query: dict[str, Any]) -> tuple[int, str]:
    """The event stream's status and its first bytes (an accepted stream goes on)."""
    with svc.http.stream(
        "GET", "/api/v2/events/stream", params=query, headers={"Authorization": f"Token {token}"}
    ) as resp:
        first = next(resp.iter_bytes(), b"")
        return resp.status_code, first.decode()


def _call(w: World, token: str, device_token: str, method: str, r: Resources) -> tuple[int, str]:
    svc = w.svc
    if method in SERVER:
        resp = svc.call(method.split("/")[0], {"auth": token, **SERVER[method](r)})
    elif method in V2:
        name = re.sub(r"/(message|message_id|campaign|tracking|hwid|user|app|ids)$", "", method)
        if name == "events/stream":
            return _stream(svc, token, V2[method](r))
        resp = svc.v2(name, V2[method](r), token=token)
    else:
        resp = svc.call(
            method, DEVICE[method](r), headers={"Authorization": f"Token {device_token}"}
        )
    return resp.status_code, resp.text


@pytest.mark.parametrize(("foreign", "method"), _cases("b1") + _cases("a2"), ids=lambda v: str(v))
def test_foreign_resources_are_unreachable_and_indistinguishable(
    world: World, foreign: str, method: str
) -> None:
    w = world
    r = getattr(w, foreign)
    # another account: the unrestricted tokens; another application: the restricted ones
    server, device = (w.a_server, w.a_device) if foreign == "b1" else (w.a1_server, w.a1_device)
    before = w.svc.db.counts()
    existing = _call(w, server, device, method, r)
    missing = _call(w, server, device, method, _missing(r))
    assert _mask(existing[1], r, _missing(r)) == _mask(missing[1], r, _missing(r)), (
        existing,
        missing,
    )
    assert existing[0] == missing[0]
    if existing[0] == 200:
        body = json.loads(existing[1])
        # an accepted call may only be one that reveals and touches nothing foreign
        if method in V2:
            assert body.get("data", body.get("items", [])) in ([], None), body
        elif body["status_code"] == 200:
            assert method in ("pushStat", "messageDeliveryEvent", "listFilters"), body
            assert body["response"] in (None, {"filters": []}), body
    after = w.svc.db.counts()
    changed = {k for k in after if after[k] != before[k]}
    assert not changed & {"deliveries", "events", "devices", "tag_values", "messages"}, changed


@pytest.mark.parametrize("method", [*SERVER, *V2])
def test_revoked_unknown_device_and_method_restricted_tokens_reach_nothing(
    world: World, method: str
) -> None:
    w = world
    from tests.support import run

    revoked = w.svc.make_token("server")
    from pushtrack.api import auth

    assert run(w.svc.store.revoke_tokens(w.svc.account, auth.prefix_of(revoked))) == 1
    only_tags = w.svc.make_token("server", methods=["listTags"])
    own = _populate_once(w)
    unknown = _call(w, "no-such-token-" + "x" * 30, w.a_device, method, own)
    assert _call(w, revoked, w.a_device, method, own) == unknown
    assert unknown[0] == 401
    assert _call(w, w.a_device, w.a_device, method, own)[0] == 403  # a device token
    if not method.startswith("listTags"):
        assert _call(w, only_tags, w.a_device, method, own)[0] == 403


_OWN: dict[int, Resources] = {}


def _populate_once(w: World) -> Resources:
    """Resources of the caller's own first application (callers above must not see
    them either, though they are the caller account's own)."""
    key = id(w)
    if key not in _OWN:
        _OWN[key] = _populate(w.svc, w.svc.app.code, "owntag")
    return _OWN[key]


# -- the caller's own application, beside a foreign resource ---------------------------
#
# Each request names an application the token may use (and, for device methods, a
# device of it), and beside it something of another application or account: a tag,
# a filter, a message (code or shown id), a tracking code, a payload hash, a campaign,
# a user, a webhook. Nothing foreign may be reached through the own application.

Mixed = Callable[[str, Resources], dict[str, Any]]

MIXED_SERVER: dict[str, Mixed] = {
    "deleteTag": lambda own, r: {"application": own, "tag": r.tag},
    "createFilter": lambda own, r: {
        "name": f"x-mixed-{r.tag}",
        "application": own,
        "filter_expression": f'T("{r.tag}", EQ, "v")',
    },
    # the foreign device's push token (its hwid would leave an entry of the caller's own
    # under that hwid, which getMessageLog by hwid then rightly shows)
    "createMessage": lambda own, r: {
        "application": own,
        "notifications": [{"content": "x", "devices": [f"token-{r.hwid}"]}],
    },
    "createMessage/filter": lambda own, r: {
        "application": own,
        "notifications": [{"content": "x", "filter": r.filter}],
    },
    "createTargetedMessage": lambda own, r: {
        "content": "x",
        "devices_filter": f'A("{own}") * T("{r.tag}", EQ, "v")',
    },
}

MIXED_V2: dict[str, Mixed] = {
    "statistics/getMessageLog/message": lambda own, r: {
        "application_code": own,
        "message_code": r.message,
    },
    "statistics/getMessageLog/message_id": lambda own, r: {
        "application_code": own,
        "message_id": r.message_id,
    },
    "statistics/getMessageLog/tracking": lambda own, r: {
        "application_code": own,
        "tracking_code": r.tracking_code,
    },
    "statistics/getMessageLog/campaign": lambda own, r: {
        "application_code": own,
        "campaign_code": r.campaign,
    },
    "statistics/getMessageLog/hwid": lambda own, r: {"application_code": own, "hwid": r.hwid},
    "statistics/getMessageLog/user": lambda own, r: {"application_code": own, "user_id": r.user},
    "messages:list": lambda own, r: {
        "filters": {"application": own, "messages_codes": [r.message]}
    },
    "messages:list/ids": lambda own, r: {
        "filters": {"application": own, "messages_ids": [r.message_id]}
    },
    "messages:list/campaign": lambda own, r: {
        "filters": {"application": own, "campaign": r.campaign}
    },
    "webhooks/removeWebhook": lambda own, r: {"application": own, "url": r.webhook},
    "webhooks/testWebhook": lambda own, r: {"application": own, "url": r.webhook},
    "webhooks/replayWebhook": lambda own, r: {
        "application": own,
        "url": r.webhook,
        "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    },
}

MIXED_DEVICE: dict[str, Mixed] = {
    "pushStat": lambda own, r: {"application": own, "hwid": OWN_HWID, "hash": r.hash},
    "messageDeliveryEvent": lambda own, r: {"application": own, "hwid": OWN_HWID, "hash": r.hash},
    "setTags": lambda own, r: {"application": own, "hwid": OWN_HWID, "tags": {r.tag: "v"}},
}


def _foreign_state(svc: Service, app: str) -> tuple[Any, ...]:
    """What one application holds, summed up: any change to it shows."""
    (row,) = svc.db.rows(
        "SELECT"
        " (SELECT COUNT(*) FROM devices WHERE app_id = a.id),"
        " (SELECT COUNT(*) FROM devices WHERE app_id = a.id AND subscribed = 1),"
        " (SELECT COUNT(*) FROM messages WHERE app_id = a.id),"
        " (SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id"
        "   WHERE m.app_id = a.id),"
        " (SELECT COALESCE(SUM(d.state + 10 * d.opened), 0) FROM deliveries d"
        "   JOIN messages m ON m.id = d.message_id WHERE m.app_id = a.id),"
        " (SELECT COUNT(*) FROM events e JOIN deliveries d ON d.id = e.delivery_id"
        "   JOIN messages m ON m.id = d.message_id WHERE m.app_id = a.id),"
        " (SELECT COUNT(*) FROM tag_values t JOIN devices v ON v.id = t.device_id"
        "   WHERE v.app_id = a.id),"
        " (SELECT COUNT(*) FROM saved_filters WHERE app_id = a.id)"
        " FROM applications a WHERE a.code = ?",
        (app,),
    )
    return tuple(row)


def _mixed_call(
    w: World, token: str, device_token: str, method: str, own: str, r: Resources
) -> tuple[int, str]:
    svc = w.svc
    if method in MIXED_SERVER:
        request = {"auth": token, **MIXED_SERVER[method](own, r)}
        resp = svc.call(method.split("/")[0], request)
    elif method in MIXED_V2:
        name = re.sub(r"/(message|message_id|campaign|tracking|hwid|user|ids)$", "", method)
        resp = svc.v2(name, MIXED_V2[method](own, r), token=token)
    else:
        resp = svc.call(
            method,
            MIXED_DEVICE[method](own, r),
            headers={"Authorization": f"Token {device_token}"},
        )
    return resp.status_code, resp.text


def _mixed_cases() -> list[tuple[str, str]]:
    return [(f, m) for f in ("b1", "a2") for m in [*MIXED_SERVER, *MIXED_V2, *MIXED_DEVICE]]


@pytest.mark.parametrize(("foreign", "method"), _mixed_cases(), ids=lambda v: str(v))
def test_the_own_application_leads_to_nothing_foreign(
    world: World, foreign: str, method: str
) -> None:
    w = world
    r = getattr(w, foreign)
    own = w.svc.app.code
    server, device = (w.a_server, w.a_device) if foreign == "b1" else (w.a1_server, w.a1_device)
    before = _foreign_state(w.svc, r.app)
    existing = _mixed_call(w, server, device, method, own, r)
    missing = _mixed_call(w, server, device, method, own, _missing(r))
    assert existing[0] == missing[0], (existing, missing)
    assert _mask(existing[1], r, _missing(r)) == _mask(missing[1], r, _missing(r)), (
        existing,
        missing,
    )
    body = json.loads(existing[1])
    if method in MIXED_V2 and existing[0] == 200:
        assert body.get("data", body.get("items", [])) in ([], None), body
    assert _foreign_state(w.svc, r.app) == before


# -- device methods with every kind of token that may not make them ---------------------


@pytest.mark.parametrize("method", [*DEVICE])
def test_device_methods_refuse_revoked_unknown_and_method_restricted_tokens(
    world: World, method: str
) -> None:
    from pushtrack.api import auth
    from tests.support import run

    w = world
    own = replace_app(_populate_once(w), w.svc.app.code, OWN_HWID)
    revoked = w.svc.make_token("device")
    assert run(w.svc.store.revoke_tokens(w.svc.account, auth.prefix_of(revoked))) == 1
    other = "getTags" if method == "checkDevice" else "checkDevice"
    only_other = w.svc.make_token("device", methods=[other])
    before = w.svc.db.counts()
    unknown = _call(w, "", "no-such-token-" + "x" * 30, method, own)
    assert unknown[0] == 401, unknown
    assert _call(w, "", revoked, method, own) == unknown
    # a device token restricted to another method
    assert _call(w, "", only_other, method, own)[0] == 403
    after = w.svc.db.counts()
    assert {k for k in after if after[k] != before[k]} <= {"api_tokens"}


def replace_app(r: Resources, app: str, hwid: str) -> Resources:
    from dataclasses import replace

    return replace(r, app=app, hwid=hwid)


# -- shown message ids ---------------------------------------------------------------


def test_message_ids_a_tenant_sees_say_nothing_of_other_tenants(shared: Service) -> None:
    a, b = shared.fresh_account(), shared.fresh_account()
    a.register("vol-a")
    b.register("vol-b")

    def shown(svc: Service, code: str) -> int:
        listed = svc.v2(
            "messages:list", {"filters": {"application": svc.app.code, "messages_codes": [code]}}
        )
        [item] = listed.json()["items"]
        [row] = [e for e in svc.log(message_code=code) if e.get("message_id") is not None][:1]
        assert row["message_id"] == item["id"]  # one id, wherever it is shown
        return int(item["id"])

    first = shown(a, a.send(devices=["vol-a"])["Messages"][0])
    for _ in range(5):  # another tenant's volume in between
        b.send(devices=["vol-b"])
    second = shown(a, a.send(devices=["vol-a"])["Messages"][0])
    third = shown(a, a.send(devices=["vol-a"])["Messages"][0])
    stored = {
        int(i)
        for (i,) in a.db.rows(
            "SELECT m.id FROM messages m JOIN applications p ON p.id = m.app_id WHERE p.code = ?",
            (a.app.code,),
        )
    }
    assert not {first, second, third} & stored, "store ids are never shown"
    # neither the gap after another tenant's messages nor the one without them is a count
    assert abs(second - first) > 1000
    assert abs(third - second) > 1000
