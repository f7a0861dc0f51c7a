"""APNs push types end to end: what createMessage refuses for an application's gateway,
and what the local APNs server (which checks topic suffixes, sizes and collapse ids as
APNs does) receives."""

from __future__ import annotations

from typing import Any

import pytest

from pushtrack.delivery.apns import TOPIC_SUFFIXES
from pushtrack.delivery.base import Verdict
from pushtrack.delivery.registry import parse_config
from pushtrack.domain.platforms import Platform
from tests.delivery._support import apns_token, notification
from tests.delivery.test_apns import send as apns_send
from tests.delivery.test_dispatch import gateway, send, sender, trail, work
from tests.gateways import ApnsServer
from tests.support import Service, run

__all__ = ["sender"]  # the fixture, shared with test_dispatch

SILENT = {"data": {"sync": 1}}
LIVE_UPDATE = {"aps": {"event": "update", "timestamp": 1_800_000_000, "content-state": {"s": 1}}}


def messages_of(svc: Service) -> int:
    return int(svc.db.rows("SELECT COUNT(*) FROM messages")[0][0])


@pytest.mark.parametrize(
    ("push_type", "fields", "named", "words"),
    [
        (None, {**SILENT, "ios_priority": 10}, "ios_priority", "background push"),
        ("pushtotalk", {"content": "Hi", "ios_priority": 5}, "ios_priority", "priority 10"),
        ("pushtotalk", {"content": "Hi", "ios_ttl": 30}, "ios_ttl", "apns-expiration 0"),
        ("liveactivity", {"content": "Hi"}, "ios_root_params", '"event"'),
        (None, {"content": "Hi", "collapse_id": "c" * 65}, "collapse_id", "64"),
        (
            None,
            {"content": "Hi", "collapse_id": "é" * 40, "platforms": [1]},
            "collapse_id",
            "64 bytes",
        ),
        (
            None,
            {"content": "x" * 3900, "data": {"k": "y" * 400}, "platforms": [1]},
            "content",
            "limit of 4096",
        ),
        (
            "voip",
            {"content": "x" * 4000, "data": {"k": "y" * 1200}, "platforms": [1]},
            "content",
            "limit of 5120",
        ),
    ],
)
def test_create_message_refuses_what_apns_would(
    sender: Service,
    apns_settings: dict[str, Any],
    push_type: str | None,
    fields: dict[str, Any],
    named: str,
    words: str,
) -> None:
    svc = sender
    settings = {**apns_settings, "push_type": push_type} if push_type else apns_settings
    gateway(svc, 1, "apns", settings)
    svc.register("iphone", 1, push_token=apns_token())
    before = messages_of(svc)
    out = svc.server("createMessage", notifications=[{"devices": ["iphone"], **fields}])
    assert out["status_code"] == 210, out
    assert out["status_message"].startswith(f"notifications[0].{named}: "), out
    assert words in out["status_message"]
    assert messages_of(svc) == before  # nothing written

    filtered = {k: v for k, v in fields.items() if k != "platforms"}
    body = {"auth": svc.server_token, "devices_filter": f'A("{svc.app.code}")', **filtered}
    targeted = svc.call("createTargetedMessage", body).json()
    if named == "content" or (named == "collapse_id" and "platforms" in fields):
        return  # without platforms these fit some platform, as createMessage would take them
    assert targeted["status_code"] == 210, targeted
    assert targeted["status_message"].startswith(f"{named}: "), targeted
    assert messages_of(svc) == before


def test_a_voip_app_sends_5kb_pushes_with_collapse_ids(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", {**apns_settings, "push_type": "voip"})
    token = apns_token()
    svc.register("iphone", 1, push_token=token)
    big = {"content": "x" * 4000, "data": {"k": "y" * 400}, "platforms": [1]}
    _message, (code,) = send(svc, ["iphone"], collapse_id="call-42", **big)
    work(svc)
    assert trail(svc, code)[-1] == ("delivered", "Success")
    (received,) = apns_server.delivered()
    assert received.token == token
    assert len(received.payload["aps"]["alert"]) == 4000
    headers = received.headers
    assert headers["apns-push-type"] == "voip"
    assert headers["apns-topic"] == apns_settings["topic"] + ".voip"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "call-42"


def test_priority_from_the_message_and_silent_pushes_at_5(
    sender: Service, apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    gateway(svc, 1, "apns", apns_settings)
    svc.register("a", 1, push_token=apns_token())
    svc.register("b", 1, push_token=apns_token())
    send(svc, ["a"], content="Later", ios_priority=5)
    send(svc, ["b"], content="", data={"sync": 1}, ios_priority=1)
    work(svc)
    got = sorted(
        (r.headers["apns-push-type"], r.headers["apns-priority"]) for r in apns_server.delivered()
    )
    assert got == [("alert", "5"), ("background", "1")]


# -- the gateway and the local server alone -----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("push_type", sorted(TOPIC_SUFFIXES))
async def test_every_push_type_goes_to_its_topic(
    apns_server: ApnsServer, apns_settings: dict[str, Any], push_type: str
) -> None:
    settings = {**apns_settings, "push_type": push_type}
    [outcome] = await apns_send(settings, [notification(Platform.IOS, apns_token())])
    assert outcome.verdict is Verdict.DELIVERED, outcome
    headers = apns_server.received[-1].headers
    assert headers["apns-push-type"] == push_type
    assert headers["apns-topic"] == apns_settings["topic"] + TOPIC_SUFFIXES[push_type]
    # the local server refuses the bare bundle id for it, as APNs does
    apns_server.topic, topic = apns_settings["topic"] + ".x", apns_server.topic
    try:
        [refused] = await apns_send(settings, [notification(Platform.IOS, apns_token())])
    finally:
        apns_server.topic = topic
    assert (refused.verdict, refused.reason) == (Verdict.FAILED, "TopicDisallowed")


@pytest.mark.anyio
async def test_push_to_talk_goes_at_once_or_never(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    settings = {**apns_settings, "push_type": "pushtotalk"}
    sent = notification(Platform.IOS, apns_token(), options={"ttl": 3600})
    [outcome] = await apns_send(settings, [sent])
    assert outcome.verdict is Verdict.DELIVERED
    headers = apns_server.received[-1].headers
    assert (headers["apns-priority"], headers["apns-expiration"]) == ("10", "0")


@pytest.mark.anyio
async def test_a_silent_push_through_a_voip_gateway_goes_at_10_unless_told(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    settings = {**apns_settings, "push_type": "voip"}
    batch = [
        notification(Platform.IOS, apns_token(), 1, message=SILENT),
        notification(Platform.IOS, apns_token(), 2, message={**SILENT, "ios_priority": 5}),
    ]
    outcomes = await apns_send(settings, batch)
    assert [o.verdict for o in outcomes] == [Verdict.DELIVERED] * 2
    by_token = {r.token: r.headers["apns-priority"] for r in apns_server.received}
    assert [by_token[n.push_token] for n in batch] == ["10", "5"]


@pytest.mark.anyio
async def test_local_server_refuses_a_long_collapse_id_and_oversized_voip(
    apns_server: ApnsServer, apns_settings: dict[str, Any]
) -> None:
    """What createMessage refuses up front is what APNs refuses: the local server checks it."""
    long_id = notification(Platform.IOS, apns_token(), 1, options={"collapse_id": "c" * 65})
    [refused] = await apns_send(apns_settings, [long_id])
    assert (refused.verdict, refused.reason) == (Verdict.FAILED, "BadCollapseId")
    huge = {"content": "x" * 4096, "data": {"k": "y" * 1200}}
    [too_big] = await apns_send(
        {**apns_settings, "push_type": "voip"},
        [notification(Platform.IOS, apns_token(), 2, message=huge)],
    )
    assert (too_big.verdict, too_big.reason) == (Verdict.FAILED, "PayloadTooLarge")


def test_mdm_is_refused_with_the_reason(apns_settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="mdm is not supported: MDM pushes need"):
        parse_config("apns", {**apns_settings, "push_type": "mdm"})


def test_create_targeted_message_names_the_application_refused(
    sender: Service, apns_settings: dict[str, Any]
) -> None:
    svc = sender
    other = svc.new_app("walkie-talkie")
    gateway(svc, 1, "apns", apns_settings)
    run_set = svc.store.dispatch.set_gateway
    run(run_set("default", other.code, 1, "apns", {**apns_settings, "push_type": "pushtotalk"}))
    before = messages_of(svc)
    body = {
        "auth": svc.server_token,
        "devices_filter": f'(A("{svc.app.code}") + A("{other.code}"))',
        "content": "Over",
        "ios_ttl": 30,
    }
    out = svc.call("createTargetedMessage", body).json()
    assert out["status_code"] == 210, out
    assert out["status_message"].startswith("ios_ttl: Push to Talk pushes")
    assert out["status_message"].endswith(f"(application {other.code})")
    assert messages_of(svc) == before
    body["ios_ttl"] = 0
    assert svc.call("createTargetedMessage", body).json()["status_code"] == 200
