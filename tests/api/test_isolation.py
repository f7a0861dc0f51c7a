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
    return Resources(
        app=app,
        hwid=hwid,
        user=user,
        tag=tag,
        filter=f"iso-filter-{tag}",
        message=message,
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
    "messages:list": lambda r: {"filters": {"messages_codes": [r.message]}},
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


def _mask(text: str, *resources: Resources) -> str:
    values = sorted(
        ((value, name) for r in resources for name, value in vars(r).items()),
        key=lambda vn: -len(vn[0]),
    )
    for value, name in values:
        text = text.replace(value, f"<{name}>")
    return text


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


@pytest.fixture(scope="module")
def world(shared: Service) -> World:
    a = shared.fresh_account()
    a2_app = a.new_app("a2")
    a2 = _populate(a, a2_app.code, "a2tag")
    b = shared.fresh_account()
    b1 = _populate(b, b.app.code, "b1tag")
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


def _call(w: World, token: str, device_token: str, method: str, r: Resources) -> tuple[int, str]:
    svc = w.svc
    if method in SERVER:
        resp = svc.call(method.split("/")[0], {"auth": token, **SERVER[method](r)})
    elif method in V2:
        name = re.sub(r"/(message|campaign|tracking|hwid|user|app)$", "", method)
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
