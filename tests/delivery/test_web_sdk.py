"""A browser registered the Pushwoosh way is delivered by the Web Push gateway.

Pushwoosh's Web SDK registers a subscription as ``push_token`` (the endpoint)
with ``public_key`` and ``auth_token`` (the keys, standard base64 from
``btoa``). The local Web Push service decrypts what it receives with the
browser's private key, so a delivery proves the keys were used as registered.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushtrack import config
from pushtrack.worker import build_worker
from tests.gateways import WebPushServer
from tests.gateways.webpush_server import Subscriber
from tests.support import Service, delivery_id, run, service

SETTINGS = {"max_attempts": 3, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}


@pytest.fixture
def sender(database_url: str) -> Iterator[Service]:
    with service(database_url, **SETTINGS) as s:
        yield s


def work(svc: Service) -> None:
    settings = config.load({"database": svc.store.url, **SETTINGS}, env={})
    run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(30))


def web_sdk_keys(subscriber: Subscriber) -> tuple[str, str]:
    """(public_key, auth_token) as the Web SDK sends them: btoa of the raw bytes."""
    point = subscriber.private_key.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )
    return base64.b64encode(point).decode(), base64.b64encode(subscriber.auth).decode()


def trail(svc: Service, code: str) -> list[tuple[str, str]]:
    hwid = svc.db.rows("SELECT hwid FROM deliveries WHERE id = ?", (delivery_id(svc.db, code),))[0][
        0
    ]
    return [
        (r["action"], r["description"]) for r in svc.log(hwid=hwid) if r["tracking_code"] == code
    ]


def test_a_pushwoosh_style_browser_registration_is_delivered(
    sender: Service, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    svc = sender
    for platform in (11, 12):
        run(
            svc.store.dispatch.set_gateway(
                "default", svc.app.code, platform, "webpush", webpush_settings
            )
        )
    chrome, firefox, plain = (webpush_server.subscribe() for _ in range(3))
    for hwid, platform, subscriber in (("chrome", 11, chrome), ("firefox", 12, firefox)):
        public_key, auth_token = web_sdk_keys(subscriber)
        out = svc.device(
            "registerDevice",
            hwid=hwid,
            device_type=platform,
            push_token=subscriber.endpoint,
            public_key=public_key,
            auth_token=auth_token,
            language="de-DE",
            timezone="Europe/Berlin",
            v="3.2.0",
        )
        assert out["status_code"] == 200, out
    # a subscription registered whole, as JSON, still works beside them
    svc.register("plain", 11, push_token=plain.token)

    out = svc.server(
        "createMessage",
        notifications=[
            {
                "devices": ["chrome", "firefox", "plain"],
                "content": {"de": "Hallo", "en": "Hello"},
                "data": {"order": 7},
            }
        ],
    )
    assert out["status_code"] == 200, out
    codes = out["response"]["TrackingCodes"]
    work(svc)

    for code in codes:
        assert trail(svc, code) == [
            ("created", "Created"),
            ("sent", "Sent"),
            ("delivered", "Success"),
        ]
    received = {r.subscriber: r for r in webpush_server.received if r.status == 201}
    assert set(received) == {chrome.id, firefox.id, plain.id}
    # decrypted with each browser's own keys: the German text for the German browsers
    assert received[chrome.id].payload["body"] == "Hallo"
    assert received[firefox.id].payload["body"] == "Hallo"
    assert received[plain.id].payload["body"] == "Hello"
    assert json.loads(received[chrome.id].payload["u"]) == {"order": 7}  # the SDKs read u as text
    hashes = {svc.hash_of(c) for c in codes}
    assert {r.payload["p"] for r in received.values()} == hashes


def test_a_gone_subscription_unsubscribes_the_browser(
    sender: Service, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    svc = sender
    run(svc.store.dispatch.set_gateway("default", svc.app.code, 11, "webpush", webpush_settings))
    subscriber = webpush_server.subscribe()
    public_key, auth_token = web_sdk_keys(subscriber)
    body = {"push_token": subscriber.endpoint, "public_key": public_key, "auth_token": auth_token}
    assert svc.device("registerDevice", hwid="b", device_type=11, **body)["status_code"] == 200
    webpush_server.unsubscribe(subscriber)
    out = svc.server("createMessage", notifications=[{"devices": ["b"], "content": "x"}])
    (code,) = out["response"]["TrackingCodes"]
    work(svc)
    assert trail(svc, code)[-1][0] == "failed"
    check = svc.device("checkDevice", hwid="b")
    assert check["response"] == {"exist": True, "push_token_exist": False}
