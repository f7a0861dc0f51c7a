"""An independent client, Pushwoosh's own Python library, drives the device methods.

pypushwoosh names setBadge's field ``badges``; its registerDevice sends the
time zone as a string of seconds when given one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from pypushwoosh import constants
from pypushwoosh.client import PushwooshClient
from pypushwoosh.command import RegisterDeviceCommand, SetBadgeCommand, UnregisterDeviceCommand

from tests.support import Service, service


@pytest.fixture
def client_and_service(database_url: str) -> Iterator[tuple[PushwooshClient, Service]]:
    with service(database_url) as svc:
        # the library's device commands carry no API token: this application allows that
        svc = replace(svc, app=svc.new_app("sdk app", device_token_required=False))
        client = PushwooshClient(timeout=10)
        where = urlsplit(svc.url)
        client.scheme, client.hostname = where.scheme, where.netloc
        yield client, svc


def ok(response: dict[str, Any]) -> None:
    assert (response["status_code"], response["status_message"]) == (200, "OK"), response


def test_pypushwoosh_registers_badges_and_unregisters(
    client_and_service: tuple[PushwooshClient, Service],
) -> None:
    client, svc = client_and_service
    app = svc.app.code
    ok(
        client.invoke(
            RegisterDeviceCommand(app, "iphone", constants.PLATFORM_IOS, "ab" * 32, "en", "3600")
        )
    )
    ok(client.invoke(SetBadgeCommand(app, "iphone", 6)))
    rows = svc.db.rows(
        "SELECT badge, timezone, language, subscribed FROM devices WHERE app_id = ? AND hwid = ?",
        (svc.app.id, "iphone"),
    )
    assert rows == [(6, 3600, "en", 1)]
    ok(client.invoke(RegisterDeviceCommand(app, "pixel", constants.PLATFORM_ANDROID, "fcm-1")))
    refused = client.invoke(SetBadgeCommand(app, "pixel", 1))
    assert refused["status_code"] == 210
    assert refused["status_message"] == "Badges can be set on iOS devices only"
    ok(client.invoke(UnregisterDeviceCommand(app, "iphone")))
    assert svc.db.rows(
        "SELECT push_token FROM devices WHERE app_id = ? AND hwid = 'iphone'", (svc.app.id,)
    ) == [(None,)]
