"""Property-based fuzzing of every JSON 1.3 method and getMessageLog, over HTTP.

Whatever the body: never a 500, always the documented envelope, and a call
that does not succeed writes nothing (the row count of every table is unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushtrack.api.app import JSON13
from tests.conftest import ENGINES, template_of
from tests.support import Service, shared_service

#: JSON 1.3 status_code -> the HTTP status it travels with (docs/api.md §1).
DOCUMENTED = {200: 200, 210: 200, 400: 400, 401: 401, 403: 403, 404: 404, 413: 413, 429: 429}
SERVER_METHODS = ("createMessage", "deleteMessage")
DEVICE_METHODS = ("registerDevice", "unregisterDevice", "pushStat", "messageDeliveryEvent")
#: Every JSON 1.3 method: arbitrary bodies never cause a 500 or a partial write in any.
ALL_METHODS = tuple(sorted(JSON13))
LOG = "/api/v2/statistics/getMessageLog"

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text that databases and parsers find hard: NUL, lone escapes, long, non-ASCII.
NASTY = st.sampled_from(
    ["", "\x00", "a\x00b", "\\u0000", "é", "😀", "'; DROP TABLE x; --", "%s", "?", "x" * 5000]
)
TEXT = st.text(max_size=40) | NASTY
#: Integers around the 64-bit edges as well as small ones.
INTS = st.integers() | st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30])

scalars = st.none() | st.booleans() | INTS | st.floats(allow_nan=False, allow_infinity=False) | TEXT
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@dataclass
class Target:
    """A running service with a few devices and messages that fuzzed calls may name."""

    svc: Service
    hashes: list[str]
    messages: list[str]
    known: dict[str, int]  # row counts after the last successful call

    def check(self, resp: httpx.Response) -> None:
        """The envelope is documented, and a call that did not succeed wrote nothing."""
        assert resp.headers["content-type"] == "application/json", resp.text
        body = resp.json()
        assert set(body) == {"status_code", "status_message", "response"}, body
        code = body["status_code"]
        assert code in DOCUMENTED, body
        assert resp.status_code == DOCUMENTED[code], body
        assert isinstance(body["status_message"], str), body
        assert body["status_message"], body
        assert (body["status_message"] == "OK") == (code == 200), body
        counts = self.svc.db.counts()
        if code != 200:
            assert body["response"] is None, body
            assert counts == self.known, body
        self.known = counts


@pytest.fixture(scope="module", params=ENGINES)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    path = Path(tmp_path_factory.mktemp("fuzz"))
    with shared_service(request.param, path, template_of(request)) as svc:
        for hwid, kind in (("h1", 1), ("h2", 3), ("h3", 11)):
            svc.register(hwid, device_type=kind, language="en", userId=f"u-{hwid}")
        sent = svc.send(devices=["h1", "h2", "h3"])
        hashes = [svc.hash_of(c) for c in sent["TrackingCodes"]]
        later = svc.send(devices=["h1"], send_date="2099-01-01 00:00")
        yield Target(svc, hashes, [sent["Messages"][0], later["Messages"][0]], svc.db.counts())


def post(t: Target, method: str, body: Any, *, raw: bool = False) -> httpx.Response:
    server = JSON13[method].server if method in JSON13 else True
    headers = {} if server else {"Authorization": f"Token {t.svc.device_token}"}
    if raw:
        return t.svc.http.post(f"/json/1.3/{method}", content=body, headers=headers)
    return t.svc.http.post(f"/json/1.3/{method}", json=body, headers=headers)


# -- arbitrary bodies -------------------------------------------------------------------


@pytest.mark.parametrize("method", ALL_METHODS)
@FUZZ
@given(body=json_values, wrapped=st.booleans())
def test_arbitrary_json_bodies(target: Target, method: str, body: Any, wrapped: bool) -> None:
    target.check(post(target, method, {"request": body} if wrapped else body))


@FUZZ
@given(
    raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
    method=st.sampled_from(ALL_METHODS),
)
def test_arbitrary_bytes(target: Target, raw: bytes, method: str) -> None:
    target.check(post(target, method, raw, raw=True))


# -- requests mixing valid and invalid fields ----------------------------------------------


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes any JSON value at all."""
    return st.one_of(valid, valid, json_values)


def optional_fields(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


DEVICE_TYPES = st.sampled_from([1, 3, 7, 9, 10, 11, 12, 17, 2, 5, 8, 13, 18, 19, 21])
HWIDS = st.sampled_from(["h1", "h2", "h3", "fresh", "token-h1"]) | st.text(max_size=300) | NASTY

register_fields = optional_fields(
    hwid=field(HWIDS),
    device_type=field(DEVICE_TYPES | st.integers(-5, 40)),
    push_token=field(st.none() | TEXT),
    language=field(st.sampled_from(["en", "de", "EN", "e", "eng", "", "1a"])),
    timezone=field(st.integers(-20 * 3600, 20 * 3600) | INTS),
    tags=field(st.dictionaries(TEXT, json_values, max_size=3)),
    userId=field(TEXT),
    app_version=field(st.text(max_size=70)),
    device_model=field(TEXT),
    os_version=field(TEXT),
)

localized = TEXT | st.dictionaries(st.sampled_from(["en", "de", "fr", ""]), TEXT, max_size=3)
notification = optional_fields(
    send_date=field(
        st.sampled_from(
            [
                "now",
                "",
                "2099-01-01 10:00",
                "2001-01-01 00:00",
                "2099-02-30 10:00",
                "2099-01-01 10:00:30",
                "soon",
                "0001-01-01 00:00",
                "9999-12-31 23:59",
            ]
        )
    ),
    timezone=field(
        st.sampled_from(
            [
                "UTC",
                "Europe/Berlin",
                "America/New_York",
                "Nope/X",
                "",
                "../x",
                "Etc/GMT-14",
                "Etc/GMT+12",
                "America",
            ]
        )
    ),
    ignore_user_timezone=field(st.booleans()),
    content=field(localized),
    title=field(localized),
    subtitle=field(localized),
    data=field(st.dictionaries(TEXT, json_values, max_size=3)),
    campaign=field(st.text(max_size=70)),
    devices=field(st.lists(HWIDS | st.sampled_from(["token-h2", "ghost"]), max_size=6)),
    platforms=field(st.lists(DEVICE_TYPES | INTS, max_size=6)),
    users=field(st.lists(st.sampled_from(["u-h1", "u-h2", "nobody"]) | TEXT, max_size=4)),
    ios_badges=field(INTS | st.sampled_from(["+1", "-1", "3"])),
    ios_sound=field(TEXT),
    ios_ttl=field(INTS),
    ios_category_id=field(INTS | TEXT),
    ios_root_params=field(st.dictionaries(TEXT, json_values, max_size=2)),
    android_header=field(TEXT),
    android_gcm_ttl=field(INTS),
    android_root_params=field(st.dictionaries(TEXT, json_values, max_size=2)),
    chrome_title=field(TEXT),
    chrome_gcm_ttl=field(INTS),
    safari_url_args=field(st.lists(TEXT, max_size=3)),
)


@FUZZ
@given(fields=register_fields)
def test_register_device_requests(target: Target, fields: dict[str, Any]) -> None:
    body = {"application": target.svc.app.code, **fields}
    target.check(post(target, "registerDevice", {"request": body}))


@FUZZ
@given(
    method=st.sampled_from(["unregisterDevice", "pushStat", "messageDeliveryEvent"]), data=st.data()
)
def test_device_report_requests(target: Target, method: str, data: st.DataObject) -> None:
    fields = data.draw(
        optional_fields(
            hwid=field(HWIDS),
            hash=field(st.sampled_from(target.hashes) | TEXT),
            metaData=field(st.dictionaries(TEXT, json_values, max_size=2)),
        )
    )
    body = {"application": target.svc.app.code, **fields}
    target.check(post(target, method, {"request": body}))


@settings(FUZZ, max_examples=100)
@given(notifications=field(st.lists(notification, min_size=1, max_size=3)))
def test_create_message_requests(target: Target, notifications: Any) -> None:
    body = {
        "auth": target.svc.server_token,
        "application": target.svc.app.code,
        "notifications": notifications,
    }
    target.check(post(target, "createMessage", {"request": body}))


@FUZZ
@given(data=st.data())
def test_delete_message_requests(target: Target, data: st.DataObject) -> None:
    fields = data.draw(
        optional_fields(
            message=field(st.sampled_from(target.messages) | st.text(max_size=70)),
            application=field(st.just(target.svc.app.code)),
        )
    )
    body = {"auth": target.svc.server_token, **fields}
    target.check(post(target, "deleteMessage", {"request": body}))


# -- getMessageLog -------------------------------------------------------------------------

WIRE_DATES = st.sampled_from(
    [
        "2024-01-01 00:00:00",
        "2024-01-20 12:00:00",
        "2024-03-01 00:00:00",
        "2099-01-01 00:00:00",
        "2024-01-01",
        "2024-02-30 00:00:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59",
    ]
)
log_fields = optional_fields(
    message_id=field(INTS),
    message_code=field(TEXT),
    campaign_code=field(TEXT),
    hwid=field(HWIDS | st.lists(HWIDS, max_size=4)),
    user_id=field(TEXT),
    application_code=field(TEXT),
    date_from=field(WIRE_DATES),
    date_to=field(WIRE_DATES),
    actions=field(
        st.lists(
            st.sampled_from(
                ["created", "sent", "delivered", "failed", "opened", "inbox_opened", "clicked"]
            ),
            max_size=4,
        )
    ),
    platforms=field(
        st.lists(
            st.sampled_from(["ios", "android", "chrome", "huawei android", "nope"]), max_size=3
        )
    ),
    limit=field(INTS),
    pagination_token=field(TEXT),
)


@settings(FUZZ, max_examples=100)
@given(body=log_fields | json_values, wrapped=st.booleans())
def test_get_message_log_bodies(target: Target, body: Any, wrapped: bool) -> None:
    resp = target.svc.http.post(
        LOG,
        json={"request": body} if wrapped else body,
        headers={"Authorization": f"Token {target.svc.server_token}"},
    )
    assert resp.status_code in (200, 400), resp.text
    out = resp.json()
    if resp.status_code == 200:
        assert set(out) == {"data", "pagination_token"}, out
        assert isinstance(out["data"], list)
    else:
        assert set(out) == {"error"}, out
        assert isinstance(out["error"], str)


# -- inputs that once broke things, kept as fixed examples ---------------------------------


def test_hostile_inputs(target: Target) -> None:
    app, auth = target.svc.app.code, target.svc.server_token
    deep = "[" * 5000 + "]" * 5000
    raw = [
        (
            "registerDevice",
            f'{{"request": {{"application": "{app}", "hwid": "d",'
            f' "device_type": 1, "tags": {{"a": {deep}}}}}}}',
        ),
        ("createMessage", deep),
    ]
    for method, text in raw:
        target.check(post(target, method, text.encode(), raw=True))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("registerDevice", {"application": app, "hwid": "a\x00b", "device_type": 1}),
        (
            "registerDevice",
            {"application": app, "hwid": "h", "device_type": 1, "tags": {"k\x00": "v"}},
        ),
        ("pushStat", {"application": app, "hwid": "h1", "hash": "\x00"}),
        ("unregisterDevice", {"application": f"{app}\x00", "hwid": "h1"}),
        (
            "createMessage",
            {
                "auth": auth,
                "application": app,
                "notifications": [{"content": "x", "devices": ["h1\x00"]}],
            },
        ),
        (
            "createMessage",
            {
                "auth": auth,
                "application": app,
                "notifications": [{"content": "x", "platforms": [1] * 70_000}],
            },
        ),
        (
            "createMessage",
            {"auth": f"{auth}\x00", "application": app, "notifications": [{"content": "x"}]},
        ),
        ("deleteMessage", {"auth": auth, "message": "\x00"}),
    ]
    for method, body in calls:
        target.check(post(target, method, {"request": body}))
    headers = {"Authorization": f"Token {auth}"}
    for body in (
        {"hwid": "\x00"},
        {"message_id": 2**64},
        {"hwid": [f"h{i}" for i in range(40_000)]},
        {"hwid": "h1", "actions": ["sent"] * 70_000},
    ):
        resp = target.svc.http.post(LOG, json=body, headers=headers)
        assert resp.status_code in (200, 400), resp.text
