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
    check,
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


def test_payload_size_is_refused_when_too_big_everywhere() -> None:
    assert "over the gateway's limit" in refusal({"content": "x" * 4000, "title": "y" * 200})
    # too big for Web Push only (its limit is the smallest): fine, unless only Web is meant
    n = convert({"content": "x" * 3700})
    with pytest.raises(ContentError) as info:
        check(n, platforms=[11])
    assert info.value.field == "content"
    assert "chrome payload" in str(info.value)
    check(n, platforms=[1, 3])
    # trimming makes an iOS payload fit
    convert({"content": "x" * 4000, "apns_trim_content": 1})


def test_a_request_type_can_extend_content() -> None:
    class Notification(Content, kw_only=True, forbid_unknown_fields=True):
        devices: list[str] | None = None
        platforms: list[int] | None = None

    n = msgspec.convert({"content": "x", "devices": ["a"]}, Notification)
    assert n.devices == ["a"]
    assert fields(n) == {"content": "x", "devices": ["a"]}
    with pytest.raises(msgspec.ValidationError, match='"page_id" is not supported'):
        msgspec.convert({"content": "x", "page_id": 3}, Notification)
    with pytest.raises(msgspec.ValidationError, match="unknown field `devicez`"):
        msgspec.convert({"content": "x", "devicez": []}, Notification)
    # its platforms narrow the size check: too big for Chrome, fine for iOS
    big = {"content": "x" * 3700}
    msgspec.convert({**big, "platforms": [1]}, Notification)
    with pytest.raises(msgspec.ValidationError, match="chrome payload"):
        msgspec.convert({**big, "platforms": [1, 11]}, Notification)
