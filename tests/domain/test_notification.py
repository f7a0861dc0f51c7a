"""Content: every field's limits, the rules across fields, IGNORED and UNSUPPORTED."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pushtrack.domain.notification import (
    IGNORED,
    UNSUPPORTED,
    Content,
    ContentError,
    check_for_app,
    fields,
)
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform


def convert(n: dict[str, Any]) -> Content:
    return msgspec.convert(n, Content)


def refusal(n: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        convert(n)
    return str(info.value)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_fields_are_refused_by_name(name: str) -> None:
    message = refusal({"content": "x", name: 1})
    assert message.startswith(f'"{name}" is not supported: {UNSUPPORTED[name]}')
    convert({"content": "x", name: None})  # null is absent


@pytest.mark.parametrize("name", sorted(IGNORED))
@pytest.mark.parametrize("platform", list(Platform))
def test_ignored_fields_change_no_payload(name: str, platform: Platform) -> None:
    base = {"content": "x", "link": "https://e.com"}
    with_it = fields(convert({**base, name: 0}))
    assert with_it[name] == 0  # kept as the sender gave it, with the message
    assert build_template(with_it, platform, None) == build_template(base, platform, None)


def test_every_field_is_honoured_ignored_or_refused_and_lists_do_not_overlap() -> None:
    assert not IGNORED.keys() & UNSUPPORTED.keys()
    declared = set(Content.__struct_fields__)
    assert IGNORED.keys() <= declared
    assert UNSUPPORTED.keys() <= declared


def test_data_as_object_or_json_string() -> None:
    assert convert({"data": {"a": 1}}).data == {"a": 1}
    assert convert({"data": '{"a": [1]}'}).data == {"a": [1]}
    assert "data: expected an object" in refusal({"data": "{nope"})
    assert "data: the JSON string must hold an object" in refusal({"data": "[1]"})


@pytest.mark.parametrize(
    ("n", "named"),
    [
        ({}, "content: required"),
        ({"content": ""}, "content: required"),
        ({"content": {}}, "content: required"),
        ({"data": {}}, "content: required"),
        ({"content": "x", "ios_ttl": -1}, "ios_ttl"),
        ({"content": "x", "android_gcm_ttl": 2_419_201}, "android_gcm_ttl"),
        ({"content": "x", "send_rate": 0}, "send_rate"),
        ({"content": "x", "send_rate": 1001}, "send_rate"),
        ({"content": "x", "ios_badges": "+x"}, "ios_badges"),
        ({"content": "x", "ios_badges": -1}, "ios_badges"),
        ({"content": "x", "mac_badges": "+1"}, "mac_badges"),
        ({"content": "x", "android_priority": 3}, "android_priority"),
        ({"content": "x", "android_delivery_priority": "urgent"}, "android_delivery_priority"),
        ({"content": "x", "android_led": "rouge"}, "android_led"),
        ({"content": "x", "huawei_android_ibc": "#12345"}, "huawei_android_ibc"),
        ({"content": "x", "ios_silent": 2}, "ios_silent"),
        ({"content": "x", "link": ""}, "link"),
        ({"content": "x", "ios_thread_id": "t" * 65}, "ios_thread_id"),
        ({"content": "x", "safari_url_args": ["a"] * 33}, "safari_url_args"),
        ({"content": "x", "chrome_duration": -1}, "chrome_duration"),
        ({"content": "x", "minimize_link": 3}, "minimize_link"),
        ({"content": "x", "ios_root_params": []}, "ios_root_params"),
        ({"content": "x", "contnet": "typo"}, "contnet"),
        # what a silent push cannot carry
        ({"content": "x", "ios_silent": 1, "ios_title": "t"}, "ios_title: ios_silent"),
        ({"content": "x", "ios_silent": 1, "ios_sound": "s"}, "ios_sound: ios_silent"),
        ({"content": "x", "ios_silent": 1, "ios_badges": 1}, "ios_badges: ios_silent"),
        ({"content": "x", "ios_silent": True, "ios_critical": 1}, "ios_critical: ios_silent"),
        ({"content": "x", "android_silent": 1, "android_sound": "s"}, "android_sound"),
        ({"content": "x", "huawei_android_silent": 1, "huawei_android_header": "h"}, "header"),
        ({"data": {"k": 1}, "title": "t"}, "title: a push without content is silent"),
        ({"data": {"k": 1}, "chrome_image": "https://e.com/i"}, "chrome_image: a push without"),
        ({"data": {"k": 1}, "android_banner": "https://e.com/b"}, "android_banner"),
        # the rest
        ({"content": "x", "chrome_button_url2": "https://e.com"}, "chrome_button_url2: needs"),
        ({"content": "x", "rich_media": "1E23F-EDCD6"}, "rich_media: expected the https URL"),
        ({"content": "x", "rich_media": "http://e.com/r.zip"}, "rich_media"),
        ({"content": "x", "ios_root_params": {"p": 1}}, 'ios_root_params: "p" is reserved'),
        ({"content": "x", "mac_root_params": {"aps": 1}}, 'mac_root_params: "aps" must be'),
        ({"content": "x", "android_root_params": {"google.x": "1"}}, '"google.x" is a key FCM'),
        ({"content": "x", "adm_root_params": {"from": "1"}}, "adm_root_params"),
        ({"content": "x", "chrome_root_params": {"md": 1}}, "chrome_root_params"),
    ],
)
def test_refused_naming_the_field(n: dict[str, Any], named: str) -> None:
    assert named in refusal(n)


@pytest.mark.parametrize(
    "n",
    [
        {"data": {"k": 1}},
        {"data": '{"k": 1}'},
        {"ios_silent": 1},  # a bare background push wakes the app
        {"data": {"k": 1}, "ios_badges": 3},  # a badge-only push
        {"content": "x", "android_silent": 1, "android_badges": "+1"},
        {"content": "x", "ios_silent": 0, "ios_title": "t"},
        {"content": "x", "chrome_button_text1": "A"},
        {"content": "x", "rich_media": "https://cdn.e.com/r/ABC.zip?v=2"},
        {"content": "x", "android_ibc": "#80FF0000", "android_led": "lightgrey"},
        {"content": "x", "android_delivery_priority": "High"},
        {"content": "x", "chrome_root_params": {"from": "web"}},  # FCM's reserved words: not web
        {"content": "x", "send_rate": 1},
        {"content": "x", "link": None, "minimize_link": False},
    ],
)
def test_accepted(n: dict[str, Any]) -> None:
    convert(n)


def app_refusal(n: dict[str, Any], push_types: dict[int, str] | None = None) -> ContentError:
    with pytest.raises(ContentError) as info:
        check_for_app(convert(n), push_types)
    return info.value


def test_payload_size_is_refused_when_too_big_everywhere() -> None:
    error = app_refusal({"content": "x" * 4000, "title": "y" * 200})
    assert "over the gateway's limit" in str(error)
    # too big for Web Push only (its limit is the smallest): fine, unless only Web is meant
    n = convert({"content": "x" * 3700})
    check_for_app(n)
    with pytest.raises(ContentError) as info:
        check_for_app(msgspec.convert({"content": "x" * 3700, "platforms": [11]}, Notification))
    assert info.value.field == "content"
    assert "chrome payload" in str(info.value)
    # trimming makes an iOS payload fit
    check_for_app(convert({"content": "x" * 4000, "apns_trim_content": 1}))


class Notification(Content, kw_only=True, forbid_unknown_fields=True):
    devices: list[str] | None = None
    platforms: list[int] | None = None


def test_voip_payloads_may_take_5120_bytes() -> None:
    ios_only = {"content": "x" * 3900, "data": {"k": "y" * 300}, "platforms": [1]}
    n = msgspec.convert(ios_only, Notification)
    error = app_refusal_of(n, None)
    assert (error.field, "limit of 4096" in error.reason) == ("content", True)
    check_for_app(n, {1: "voip"})  # a VoIP app's pushes may take 5 KB
    bigger = msgspec.convert({**ios_only, "data": {"k": "y" * 1200}}, Notification)
    assert "limit of 5120" in app_refusal_of(bigger, {1: "voip"}).reason


def app_refusal_of(n: Content, push_types: dict[int, str] | None) -> ContentError:
    with pytest.raises(ContentError) as info:
        check_for_app(n, push_types)
    return info.value


SILENT = {"data": {"sync": 1}}


@pytest.mark.parametrize(
    ("n", "push_types", "field", "words"),
    [
        ({**SILENT, "ios_priority": 10}, None, "ios_priority", "background push"),
        ({"content": "Hi", "ios_silent": 1, "ios_priority": 10}, None, "ios_priority", "5 or 1"),
        ({"content": "Hi", "ios_priority": 1}, {1: "pushtotalk"}, "ios_priority", "priority 10"),
        ({"content": "Hi", "ios_priority": 1}, {1: "liveactivity"}, "ios_priority", "10 or 5"),
        ({"content": "Hi", "ios_ttl": 60}, {1: "pushtotalk"}, "ios_ttl", "apns-expiration 0"),
        ({"content": "Hi"}, {1: "liveactivity"}, "ios_root_params", '"event"'),
        (
            {"content": "Hi", "ios_root_params": {"aps": {"event": "update"}}},
            {1: "liveactivity"},
            "ios_root_params",
            "aps.timestamp",
        ),
        (
            {"content": "Hi", "ios_root_params": {"aps": {"event": "update", "timestamp": 1}}},
            {1: "liveactivity"},
            "ios_root_params",
            "content-state",
        ),
        (
            {
                "content": "Hi",
                "ios_root_params": {"aps": {"event": "start", "timestamp": 1, "content-state": {}}},
            },
            {1: "liveactivity"},
            "ios_root_params",
            "attributes-type",
        ),
        (SILENT, {1: "widgets"}, "ios_root_params", "content-changed"),
        ({**SILENT, "mac_ttl": 5}, {7: "pushtotalk"}, "mac_ttl", "apns-expiration 0"),
    ],
)
def test_what_apns_asks_of_each_push_type(
    n: dict[str, Any], push_types: dict[int, str] | None, field: str, words: str
) -> None:
    error = app_refusal(n, push_types)
    assert error.field == field
    assert words in error.reason


@pytest.mark.parametrize(
    ("n", "push_types"),
    [
        ({**SILENT, "ios_priority": 5}, None),
        ({"content": "Hi", "ios_priority": 5}, None),
        ({**SILENT, "ios_priority": 10}, {1: "voip"}),  # sent as voip, not background
        ({"content": "Hi", "ios_ttl": 0}, {1: "pushtotalk"}),
        (
            {
                "content": "Score",
                "ios_priority": 5,
                "ios_root_params": {
                    "aps": {"event": "update", "timestamp": 1, "content-state": {"home": 2}}
                },
            },
            {1: "liveactivity"},
        ),
        (
            {"content": "Hi", "ios_root_params": {"aps": {"event": "end", "timestamp": 9}}},
            {1: "liveactivity"},
        ),
        ({**SILENT, "ios_root_params": {"aps": {"content-changed": True}}}, {1: "widgets"}),
        # the push type is the iOS gateway's: an Android-only message is not checked by it
        ({"content": "Hi", "ios_ttl": 60, "platforms": [3]}, {1: "pushtotalk"}),
    ],
)
def test_push_types_accepted(n: dict[str, Any], push_types: dict[int, str] | None) -> None:
    check_for_app(msgspec.convert(n, Notification), push_types)


@pytest.mark.parametrize(
    ("n", "words"),
    [
        ({"content": "x", "collapse_id": "é" * 33}, "at most 64 bytes"),
        ({"content": "x", "collapse_id": "x" * 65}, "64"),
        ({"content": "x", "collapse_id": "news:today"}, "Topic"),
        ({"content": "x", "collapse_id": "y" * 33, "platforms": [1, 12]}, "Topic"),
        ({"content": "x", "ios_priority": 7}, r"expected 10 \(at once\), 5 or 1"),
    ],
)
def test_collapse_id_and_priority_limits(n: dict[str, Any], words: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=words):
        msgspec.convert(n, Notification)


def test_collapse_id_reaches_every_gateway_option() -> None:
    n = {"content": "x", "collapse_id": "scores"}
    for platform in (Platform.IOS, Platform.SAFARI, Platform.ANDROID, Platform.CHROME):
        assert build_template(n, platform, None).options["collapse_id"] == "scores"
    # an iOS-only message may use APNs' longer ids
    msgspec.convert({**n, "collapse_id": "news:" + "z" * 59, "platforms": [1]}, Notification)


def test_a_request_type_can_extend_content() -> None:
    n = msgspec.convert({"content": "x", "devices": ["a"]}, Notification)
    assert n.devices == ["a"]
    assert fields(n) == {"content": "x", "devices": ["a"]}
    with pytest.raises(msgspec.ValidationError, match='"page_id" is not supported'):
        msgspec.convert({"content": "x", "page_id": 3}, Notification)
    with pytest.raises(msgspec.ValidationError, match="unknown field `devicez`"):
        msgspec.convert({"content": "x", "devicez": []}, Notification)
    # its platforms narrow the size check: too big for Chrome, fine for iOS
    big = {"content": "x" * 3700}
    check_for_app(msgspec.convert({**big, "platforms": [1]}, Notification))
    with pytest.raises(ContentError, match="chrome payload"):
        check_for_app(msgspec.convert({**big, "platforms": [1, 11]}, Notification))
