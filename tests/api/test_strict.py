"""Strict requests: every method understands a request whole or refuses it, naming the field.

For every method of both API families: a valid request is answered 200, and the same
request with one key the method does not know is refused (210 / HTTP 400 on v2) naming
that key, and writes nothing. A targeted push with a misspelt or unsupported key never
becomes a broadcast.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushtrack.api.app import JSON13, V2
from pushtrack.api.messages import CreateMessage, NotificationIn
from tests.conftest import ENGINES, template_of
from tests.support import Service, shared_service

Body = Callable[[Service, dict[str, Any]], dict[str, Any]]


def _json13(method: str) -> Callable[[Service, dict[str, Any]], httpx.Response]:
    def post(svc: Service, request: dict[str, Any]) -> httpx.Response:
        headers = {} if JSON13[method].server else {"Authorization": f"Token {svc.device_token}"}
        return svc.call(method, request, headers=headers)

    return post


#: A valid request for each method (given the service and what the fixture prepared).
BASELINES: dict[str, Body] = {
    "registerDevice": lambda s, _: {
        "application": s.app.code,
        "hwid": "strict-new",
        "device_type": 3,
        "push_token": "tok-new",
    },
    "unregisterDevice": lambda s, _: {"application": s.app.code, "hwid": "strict-gone"},
    "pushStat": lambda s, p: {"application": s.app.code, "hwid": "h1", "hash": p["hash"]},
    "messageDeliveryEvent": lambda s, p: {
        "application": s.app.code,
        "hwid": "h1",
        "hash": p["hash"],
    },
    "applicationOpen": lambda s, _: {"application": s.app.code, "hwid": "h1"},
    "registerUser": lambda s, _: {"application": s.app.code, "hwid": "h1", "userId": "u1"},
    "setBadge": lambda s, _: {"application": s.app.code, "hwid": "h1", "badge": 3},
    "checkDevice": lambda s, _: {"application": s.app.code, "hwid": "h1"},
    "postEvent": lambda s, _: {
        "application": s.app.code,
        "hwid": "h1",
        "event": "purchase",
        "attributes": {"sku": "a1"},
    },
    "getEventStatistics": lambda s, _: {
        "auth": s.server_token,
        "application": s.app.code,
        "event": "purchase",
        "date_from": "2026-01-01",
        "date_to": "2026-01-02",
    },
    "setTags": lambda s, _: {"application": s.app.code, "hwid": "h1", "tags": {"level": 3}},
    "getTags": lambda s, _: {"application": s.app.code, "hwid": "h1"},
    "addTag": lambda s, _: {
        "auth": s.server_token,
        "application": s.app.code,
        "tag": {"name": f"t-{uuid.uuid4().hex[:8]}", "type": 1},
    },
    "listTags": lambda s, _: {"auth": s.server_token, "application": s.app.code},
    "deleteTag": lambda s, p: {
        "auth": s.server_token,
        "application": s.app.code,
        "tag": {"name": p["tag"]},
    },
    "createFilter": lambda s, _: {
        "auth": s.server_token,
        "name": f"f-{uuid.uuid4().hex[:8]}",
        "conditions": [["level", "GTE", 2]],
        "application": s.app.code,
    },
    "listFilters": lambda s, _: {"auth": s.server_token},
    "deleteFilter": lambda s, p: {"auth": s.server_token, "name": p["filter"]},
    "createMessage": lambda s, _: {
        "auth": s.server_token,
        "application": s.app.code,
        "notifications": [{"content": "hi", "devices": ["h1"]}],
    },
    "createTargetedMessage": lambda s, _: {
        "auth": s.server_token,
        "content": "hi",
        "devices_filter": f'A("{s.app.code}") * T("level", GTE, 2)',
    },
    "deleteMessage": lambda s, p: {"auth": s.server_token, "message": p["scheduled"]},
    "getTrackingLog": lambda s, _: {"auth": s.server_token},
    "getResults": lambda s, p: {"auth": s.server_token, "request_id": p["request_id"]},
    "getMsgStats": lambda s, p: {"auth": s.server_token, "message": p["message"]},
    "statistics/getMessageLog": lambda s, p: {"message_code": p["message"]},
    "statistics/messages/totalsByIntervals": lambda s, p: {"message_code": p["message"]},
    "messages:list": lambda s, _: {"filters": {"application": s.app.code}},
    "devices/deadTokens": lambda s, _: {"application": s.app.code},
    "webhooks/addWebhook": lambda s, _: {
        "application": s.app.code,
        "url": f"https://hooks.invalid/{uuid.uuid4().hex[:8]}",
    },
    "webhooks/listWebhooks": lambda s, _: {"application": s.app.code},
    "webhooks/removeWebhook": lambda s, p: {"application": s.app.code, "url": p["webhook"]},
    "webhooks/testWebhook": lambda s, p: {"application": s.app.code, "url": p["webhook"]},
    "webhooks/replayWebhook": lambda s, p: {
        "application": s.app.code,
        "url": p["webhook"],
        "since": time.strftime("%Y-%m-%d", time.gmtime()),
    },
}


def _scheduled(svc: Service) -> dict[str, Any]:
    return {"scheduled": svc.send(devices=["h2"], send_date="2099-01-01 00:00")["Messages"][0]}


def _tag(svc: Service) -> dict[str, Any]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    out = svc.server("addTag", tag={"name": name, "type": 2})
    assert out["status_code"] == 200, out
    return {"tag": name}


def _filter(svc: Service) -> dict[str, Any]:
    name = f"f-{uuid.uuid4().hex[:8]}"
    out = svc.server("createFilter", name=name, conditions=[["level", "GTE", 1]])
    assert out["status_code"] == 200, out
    return {"filter": name}


def _webhook(svc: Service) -> dict[str, Any]:
    url = f"https://hooks.invalid/{uuid.uuid4().hex[:8]}"
    resp = svc.v2("webhooks/addWebhook", {"application": svc.app.code, "url": url})
    assert resp.status_code == 200, resp.text
    return {"webhook": url}


#: What a method needs made afresh for each call (it consumes it).
SETUP: dict[str, Callable[[Service], dict[str, Any]]] = {
    "deleteMessage": _scheduled,
    "deleteTag": _tag,
    "deleteFilter": _filter,
    "webhooks/removeWebhook": _webhook,
    "webhooks/testWebhook": _webhook,
    "webhooks/replayWebhook": _webhook,
}


def test_every_method_has_a_baseline() -> None:
    assert set(BASELINES) == set(JSON13) | set(V2)


@pytest.fixture(scope="module", params=ENGINES)
def prepared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, dict[str, Any]]]:
    path = Path(tmp_path_factory.mktemp("strict"))
    with shared_service(request.param, path, template_of(request)) as svc:
        svc.register("h1", push_token="t1", tags={"level": 2})
        svc.register("h2", push_token="t2")
        svc.register("strict-gone", push_token="t3")
        sent = svc.send(devices=["h1"])
        log = svc.server("getTrackingLog")
        yield (
            svc,
            {
                "hash": svc.hash_of(sent["TrackingCodes"][0]),
                "message": sent["Messages"][0],
                "request_id": log["response"]["request_id"],
            },
        )


def _post(svc: Service, method: str, request: dict[str, Any]) -> httpx.Response:
    if method in V2:
        return svc.v2(method, request)
    return _json13(method)(svc, request)


def _refusal(resp: httpx.Response, method: str) -> str:
    body = resp.json()
    if method in V2:
        assert resp.status_code == 400, body
        return str(body["error"])
    assert resp.status_code == 200, body
    assert body["status_code"] == 210, body
    assert body["response"] is None, body
    return str(body["status_message"])


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_an_unknown_key_is_refused_by_name_and_writes_nothing(
    prepared: tuple[Service, dict[str, Any]], method: str
) -> None:
    svc, params = prepared
    params = {**params, **SETUP.get(method, lambda _: {})(svc)}
    request = BASELINES[method](svc, params)
    before = svc.db.counts()
    refused = _post(svc, method, {**request, "devicez": ["h2"]})
    assert _refusal(refused, method) == 'unknown field "devicez"'
    assert svc.db.counts() == before
    accepted = _post(svc, method, request)
    assert accepted.status_code == 200, accepted.text
    if method not in V2:
        assert accepted.json()["status_code"] == 200, accepted.text


def test_a_misspelt_targeting_key_in_a_notification_is_refused(
    prepared: tuple[Service, dict[str, Any]],
) -> None:
    svc, _ = prepared
    before = svc.db.counts()
    out = svc.server("createMessage", notifications=[{"content": "hi", "devicez": ["h1"]}])
    assert out["status_code"] == 210
    assert out["status_message"] == 'notifications[0]: unknown field "devicez"'
    assert svc.db.counts() == before


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("notification", "geozone"),
        ("notification", "segment"),
        ("notification", "devices_filter"),
        ("notification", "page_id"),
        ("request", "applications_group"),
    ],
)
def test_documented_but_unsupported_fields_are_refused_as_such(
    prepared: tuple[Service, dict[str, Any]], where: str, field: str
) -> None:
    svc, _ = prepared
    before = svc.db.counts()
    notification: dict[str, Any] = {"content": "hi"}
    extra: dict[str, Any] = {}
    (notification if where == "notification" else extra)[field] = "x"
    out = svc.server("createMessage", notifications=[notification], **extra)
    assert out["status_code"] == 210
    prefix = "notifications[0]: " if where == "notification" else ""
    assert out["status_message"].startswith(f'{prefix}"{field}" is not supported: '), out
    assert svc.db.counts() == before


def test_device_methods_refuse_a_body_auth(prepared: tuple[Service, dict[str, Any]]) -> None:
    svc, _ = prepared
    out = svc.device("registerDevice", hwid="x", device_type=3, auth=svc.server_token)
    assert out["status_code"] == 210
    assert out["status_message"].startswith('unknown field "auth"')


def test_v2_refuses_keys_beside_the_request_wrapper(
    prepared: tuple[Service, dict[str, Any]],
) -> None:
    svc, params = prepared
    resp = svc.v2(
        "statistics/getMessageLog",
        {"request": {"message_code": params["message"]}, "limits": 5},
    )
    assert resp.status_code == 400
    assert resp.json() == {"error": 'unknown field "limits" beside "request"'}


def test_v2_takes_auth_inside_or_beside_the_request_wrapper(
    prepared: tuple[Service, dict[str, Any]],
) -> None:
    svc, params = prepared
    inner = {"message_code": params["message"]}
    for body in (
        {"request": {**inner, "auth": svc.server_token}},
        {"request": inner, "auth": svc.server_token},
        {**inner, "auth": svc.server_token},
    ):
        resp = svc.http.post("/api/v2/statistics/getMessageLog", json=body)
        assert resp.status_code == 200, (body, resp.text)
        assert resp.json()["data"], body


@pytest.mark.parametrize("path", ["/json/1.3/createMessage", "/api/v2/statistics/getMessageLog"])
def test_invalid_utf8_is_a_400_in_the_envelope(
    prepared: tuple[Service, dict[str, Any]], path: str
) -> None:
    svc, _ = prepared
    body = b'{"request": {"auth": "x", "application": "\xff\xfe", "notifications": []}}'
    resp = svc.http.post(path, content=body)
    assert resp.status_code == 400
    if path.startswith("/json"):
        assert resp.json() == {
            "status_code": 400,
            "status_message": "Malformed request string",
            "response": None,
        }
    else:
        assert resp.json() == {"error": "Malformed request string"}


#: Every key a notification or createMessage request understands.
KNOWN = set(NotificationIn.__struct_fields__) | set(CreateMessage.__struct_fields__) | {"auth"}


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    key=st.text(min_size=1, max_size=20).filter(lambda k: k not in KNOWN),
    value=st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.lists(st.text()),
    nested=st.booleans(),
)
def test_extra_keys_never_change_who_receives(
    prepared: tuple[Service, dict[str, Any]], key: str, value: Any, nested: bool
) -> None:
    """A push to h1 with any extra key is refused whole: it never reaches h2 (or h1)."""
    svc, _ = prepared
    before = svc.db.counts()
    notification: dict[str, Any] = {"content": "hi", "devices": ["h1"]}
    request: dict[str, Any] = {"notifications": [notification]}
    (notification if nested else request)[key] = value
    out = svc.server("createMessage", **request)
    assert out["status_code"] == 210, out
    assert key in out["status_message"], out
    assert svc.db.counts() == before
