"""An independent client: Pushwoosh's own Python library, pointed at pushtrack.

`pypushwoosh` (from PyPI) registers devices, sets and reads their tags, and sends with
tag conditions and with a filter expression; the local FCM server shows that only the
matching devices receive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from pypushwoosh import constants
from pypushwoosh.client import PushwooshClient
from pypushwoosh.command import (
    CreateMessageForApplicationCommand,
    CreateTargetedMessageCommand,
    GetTagsCommand,
    RegisterDeviceCommand,
    SetTagsCommand,
)
from pypushwoosh.filter import ApplicationFilter, BooleanTagFilter, IntegerTagFilter
from pypushwoosh.notification import Notification

from tests.delivery.test_dispatch import SETTINGS, work
from tests.gateways import FcmServer
from tests.support import Service, run, service

#: hwid -> (level, vip) of the population the library registers.
POPULATION = {f"phone-{i}": (i, i % 2 == 0) for i in range(1, 7)}


def token_of(hwid: str) -> str:
    return f"fcm-token-{hwid}-000000"


@pytest.fixture
def client_and_service(
    database_url: str, fcm_server: FcmServer, fcm_settings: dict[str, Any]
) -> Iterator[tuple[PushwooshClient, Service]]:
    with service(database_url, **SETTINGS) as svc:
        # Pushwoosh's device commands carry no API token: this application allows that.
        app = svc.new_app("sdk app", device_token_required=False)
        svc = replace(svc, app=app)
        run(svc.store.dispatch.set_gateway("default", app.code, 3, "fcm", fcm_settings))
        client = PushwooshClient(timeout=10)
        where = urlsplit(svc.url)
        client.scheme, client.hostname = where.scheme, where.netloc
        yield client, svc


def receivers(fcm_server: FcmServer) -> set[str]:
    return {m.token for m in fcm_server.received if m.status == 200 and m.token}


def ok(response: dict[str, Any]) -> Any:
    assert response["status_code"] == 200, response
    return response["response"]


def test_pypushwoosh_registers_tags_and_sends_only_to_the_matching_devices(
    client_and_service: tuple[PushwooshClient, Service], fcm_server: FcmServer
) -> None:
    client, svc = client_and_service
    app = svc.app.code
    for hwid, (level, vip) in POPULATION.items():
        ok(
            client.invoke(
                RegisterDeviceCommand(app, hwid, constants.PLATFORM_ANDROID, token_of(hwid), "en")
            )
        )
        ok(client.invoke(SetTagsCommand(app, hwid, {"level": level, "vip": vip})))
    tags = ok(client.invoke(GetTagsCommand(app, "phone-4")))
    assert tags["result"]["level"] == 4
    assert tags["result"]["vip"] is True

    # createMessage with tag conditions
    notification = Notification()
    notification.content = "Level three and up"
    notification.conditions = [["level", "GTE", 3]]
    command = CreateMessageForApplicationCommand(notification, app)
    command.auth = svc.server_token
    assert len(ok(client.invoke(command))["Messages"]) == 1
    work(svc)
    expected = {token_of(h) for h, (level, _) in POPULATION.items() if level >= 3}
    assert receivers(fcm_server) == expected

    # createTargetedMessage with a filter expression the library renders
    fcm_server.reset()
    targeted = CreateTargetedMessageCommand()
    targeted.auth = svc.server_token
    targeted.content = "VIPs below level five"
    targeted.devices_filter = (
        ApplicationFilter(app)
        .intersect(BooleanTagFilter("vip", "EQ", 1))
        .subtract(IntegerTagFilter("level", "GTE", 5))
    )
    assert ok(client.invoke(targeted))["Messages"]
    work(svc)
    expected = {token_of(h) for h, (level, vip) in POPULATION.items() if vip and level < 5}
    assert receivers(fcm_server) == expected
