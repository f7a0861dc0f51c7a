"""build_template: the payload each platform's Pushwoosh SDK reads, and the gateway options."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushtrack.domain.notification import Content
from pushtrack.domain.payload import (
    LIMITS,
    RESERVE,
    build_template,
    encode,
    pick_language,
    render,
    size_of,
)
from pushtrack.domain.platforms import Platform


def body(n: dict[str, Any], platform: Platform, language: str | None = None) -> dict[str, Any]:
    return build_template(n, platform, language).body


def options(n: dict[str, Any], platform: Platform) -> dict[str, Any]:
    return build_template(n, platform, None).options


@pytest.mark.parametrize("platform", list(Platform))
def test_every_platform_carries_pw_msg_data_and_link(platform: Platform) -> None:
    b = body({"content": "Hi", "data": {"b": 1, "a": [2]}, "link": "app://x"}, platform)
    assert b["pw_msg"] == "1"
    assert b["u"] == '{"a":[2],"b":1}'  # a JSON string, as the iOS SDK requires
    assert b["l"] == "app://x"


def test_language_is_picked_per_device_then_english_then_any() -> None:
    text = {"de": "Hallo", "en": "Hello"}
    assert pick_language(text, "de") == "Hallo"
    assert pick_language(text, "fr") == "Hello"
    assert pick_language({"fr": "Salut"}, "de") == "Salut"
    assert pick_language("plain", "de") == "plain"
    assert pick_language({}, "de") is None
    assert body({"content": text}, Platform.IOS, "fr")["aps"]["alert"] == "Hello"


def test_ios_alert_sound_badge_and_options() -> None:
    assert body({"content": "Hi"}, Platform.IOS)["aps"] == {"alert": "Hi", "sound": "default"}
    assert options({"content": "Hi"}, Platform.IOS) == {"push_type": "alert"}
    n = {
        "content": "Hi",
        "title": "T",
        "ios_subtitle": "S",
        "ios_sound": "",
        "ios_badges": 2,
        "ios_category_id": 12,
        "ios_thread_id": "t",
        "ios_ttl": 60,
    }
    assert body(n, Platform.IOS)["aps"] == {
        "alert": {"title": "T", "subtitle": "S", "body": "Hi"},
        "badge": 2,
        "category": "12",
        "thread-id": "t",
    }
    assert options(n, Platform.IOS) == {"push_type": "alert", "ttl": 60}


@pytest.mark.parametrize(
    ("badges", "aps"),
    [
        (0, {"badge": 0}),
        ("7", {"badge": 7}),
        ("+3", {"pw_badge": "+3", "mutable-content": 1}),
        ("-1", {"pw_badge": "-1", "mutable-content": 1}),
    ],
)
def test_ios_badges(badges: Any, aps: dict[str, Any]) -> None:
    got = body({"content": "Hi", "ios_badges": badges}, Platform.IOS)["aps"]
    assert {k: v for k, v in got.items() if k not in ("alert", "sound")} == aps


@pytest.mark.parametrize(
    "n",
    [
        {"data": {"k": 1}},
        {"content": "", "data": {"k": 1}},
        {"content": {"en": ""}, "data": {"k": 1}},
        {"content": "Hi", "title": "T", "ios_silent": 1, "data": {"k": 1}},
        {"content": "Hi", "ios_silent": True, "ios_badges": 3},
    ],
)
def test_ios_silent_is_a_background_push(n: dict[str, Any]) -> None:
    t = build_template(n, Platform.IOS, None)
    assert t.body["aps"] == {"content-available": 1}
    assert t.options == {"push_type": "background", "priority": 5}


def test_ios_badge_without_content_is_an_alert_push() -> None:
    t = build_template({"data": {"k": 1}, "ios_badges": 1}, Platform.IOS, None)
    assert t.body["aps"] == {"badge": 1}
    assert t.options == {"push_type": "alert"}


def test_root_params_merge_aps_key_by_key_and_keep_tracking_keys() -> None:
    n = {
        "content": "Hi",
        "ios_root_params": {
            "aps": {"mutable-content": 1, "relevance-score": 0.5},
            "p": "forged",
            "md": {},
            "pw_msg": "0",
            "attachment": "https://e.com/a.jpg",
        },
    }
    b = body(n, Platform.IOS)
    assert b["aps"] == {
        "alert": "Hi",
        "sound": "default",
        "mutable-content": 1,
        "relevance-score": 0.5,
    }
    assert (b["pw_msg"], b["attachment"]) == ("1", "https://e.com/a.jpg")
    assert "p" not in b
    assert "md" not in b
    # the root params decide the push type when they make the push show something
    t = build_template(
        {"data": {"k": 1}, "ios_root_params": {"aps": {"alert": "x"}}}, Platform.IOS, None
    )
    assert t.options == {"push_type": "alert"}


@pytest.mark.parametrize(
    "text",
    [
        "Lorem ipsum dolor sit amet. " * 200,
        "é" * 3000,  # two bytes each: cut on a character boundary
        '"\\' * 2000,  # each character doubles when escaped
        "日本語のテキスト" * 400,
    ],
)
@pytest.mark.parametrize("title", [None, "T"])
def test_trim_content_fits_apns(text: str, title: str | None) -> None:
    n: dict[str, Any] = {"content": text, "apns_trim_content": 1, "data": {"k": "v"}}
    if title:
        n["title"] = title
    t = build_template(n, Platform.IOS, None)
    size, limit = size_of(t, Platform.IOS)
    assert size <= limit
    alert = t.body["aps"]["alert"]
    shown = alert["body"] if title else alert
    assert shown.endswith("…")
    assert text.startswith(shown[:-1].rstrip()[:50])
    rendered = render(t.body, "p" * 11, 2**63 - 1, "u" * 255)
    assert len(encode(rendered)) <= 4096
    # without the flag the text is left whole
    assert len(json.dumps(body({"content": text}, Platform.IOS)["aps"]["alert"])) > 4000


def test_trim_leaves_a_short_text_alone() -> None:
    n = {"content": "Hi", "ios_trim_content": 1}
    assert body(n, Platform.IOS)["aps"]["alert"] == "Hi"


def test_macos_uses_its_own_fields_not_ios_ones() -> None:
    n = {
        "content": "Hi",
        "ios_title": "iOS only",
        "ios_badges": 9,
        "mac_badges": 1,
        "mac_sound": "m.aiff",
        "mac_ttl": 5,
        "mac_root_params": {"k": 1},
    }
    t = build_template(n, Platform.MACOS, None)
    assert t.body["aps"] == {"alert": "Hi", "sound": "m.aiff", "badge": 1}
    assert t.body["k"] == 1
    assert t.options == {"push_type": "alert", "ttl": 5}


def test_safari() -> None:
    n = {"content": "Hi", "safari_title": "ST", "safari_url_args": ["x"], "safari_ttl": 9}
    t = build_template(n, Platform.SAFARI, None)
    assert t.body["aps"] == {"alert": {"title": "ST", "body": "Hi"}, "url-args": ["x"]}
    assert t.options == {"push_type": "alert", "ttl": 9}


@pytest.mark.parametrize(
    ("platform", "prefix", "ttl"),
    [
        (Platform.ANDROID, "android", "android_gcm_ttl"),
        (Platform.HUAWEI, "huawei_android", "huawei_android_gcm_ttl"),
    ],
)
def test_android_keys_are_the_sdk_keys(platform: Platform, prefix: str, ttl: str) -> None:
    n = {
        "content": {"en": "Hi", "de": "Hallo"},
        "title": "T",
        f"{prefix}_header": "H",
        f"{prefix}_sound": "s1",
        f"{prefix}_icon": "ic",
        f"{prefix}_custom_icon": "https://e.com/ci.png",
        f"{prefix}_banner": "https://e.com/b.png",
        f"{prefix}_badges": "+1",
        f"{prefix}_vibration": 0,
        f"{prefix}_led": "#112233",
        f"{prefix}_priority": 2,
        f"{prefix}_ibc": "teal",
        f"{prefix}_delivery_priority": "Normal",
        f"{prefix}_root_params": {"pw_channel": "c", "p": "forged"},
        "rich_media": "https://e.com/r.zip",
        ttl: 30,
        # other platforms' fields change nothing here
        "ios_badges": 3,
        "adm_header": "A",
    }
    t = build_template(n, platform, "de")
    rm = t.body.pop("rm")
    assert rm["url"] == "https://e.com/r.zip"
    assert t.body == {
        "pw_msg": "1",
        "title": "Hallo",
        "header": "H",
        "s": "s1",
        "i": "ic",
        "ci": "https://e.com/ci.png",
        "b": "https://e.com/b.png",
        "pw_badges": "+1",
        "vib": "0",
        "led": "#112233",
        "pri": "2",
        "ibc": "teal",
        "pw_channel": "c",
    }
    assert t.options == {"priority": "normal", "ttl": 30}


def test_amazon_fields() -> None:
    n = {"content": "Hi", "adm_header": "A", "adm_ttl": 7, "adm_priority": -2, "adm_sound": "s"}
    t = build_template(n, Platform.AMAZON, None)
    assert t.body == {"pw_msg": "1", "title": "Hi", "header": "A", "s": "s", "pri": "-2"}
    assert t.options == {"ttl": 7}


@pytest.mark.parametrize("platform", [Platform.ANDROID, Platform.HUAWEI, Platform.AMAZON])
def test_android_without_content_or_with_silent_is_silent(platform: Platform) -> None:
    assert body({"data": {"k": 1}}, platform) == {"pw_msg": "1", "u": '{"k":1}', "pw_silent": "1"}
    silent = body({"content": "Hi", "android_silent": 1}, Platform.ANDROID)
    assert silent == {"pw_msg": "1", "title": "Hi", "pw_silent": "1"}


def test_chrome_and_firefox() -> None:
    n = {
        "content": "Hi",
        "title": "T",
        "chrome_icon": "https://e.com/i.png",
        "chrome_image": "https://e.com/big.png",
        "chrome_duration": 0,
        "chrome_button_text1": "A",
        "chrome_button_url1": "https://e.com/a",
        "chrome_gcm_ttl": 40,
        "chrome_root_params": {"tag": "x"},
        "firefox_title": "FT",
        "firefox_ttl": 50,
    }
    chrome = build_template(n, Platform.CHROME, None)
    assert chrome.body == {
        "pw_msg": "1",
        "body": "Hi",
        "header": "T",
        "i": "https://e.com/i.png",
        "image": "https://e.com/big.png",
        "buttons": '[{"title":"A","url":"https://e.com/a"}]',
        "duration": 0,
        "requireInteraction": True,
        "tag": "x",
    }
    assert chrome.options == {"ttl": 40}
    firefox = build_template(n, Platform.FIREFOX, None)
    assert firefox.body == {"pw_msg": "1", "body": "Hi", "header": "FT"}
    assert firefox.options == {"ttl": 50}
    assert body({"data": {"k": 1}}, Platform.CHROME)["silent"] == 1


def test_render_adds_the_delivery_keys_and_size_counts_them() -> None:
    t = build_template({"content": "Hi"}, Platform.IOS, None)
    assert render(t.body, "abc", 7, "u1") == {
        **t.body,
        "p": "abc",
        "md": {"mid": 7, "user_id": "u1"},
    }
    size, limit = size_of(t, Platform.IOS)
    assert (size, limit) == (len(encode(t.body)) + RESERVE, LIMITS[Platform.IOS])


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.dictionaries(st.sampled_from(sorted(Content.__struct_fields__)), ANY_JSON, max_size=8),
    platform=st.sampled_from(list(Platform)),
    language=st.none() | st.sampled_from(["en", "de"]),
)
def test_never_raises_whatever_the_values(
    n: dict[str, Any], platform: Platform, language: str | None
) -> None:
    t = build_template(n, platform, language)
    encode(t.body)
    encode(t.options)
