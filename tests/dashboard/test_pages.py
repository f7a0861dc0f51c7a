"""The dashboard's HTTP behaviour, without a browser: sign-in and sessions, CSRF, security
headers, what a token may see, and what the pages show against the API's own answers."""

from __future__ import annotations

import html
import io
import json
import re
import time
import zipfile
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pushtrack.domain.platforms import Platform
from tests.dashboard._support import (
    CLEAN,
    FAILING,
    client,
    csrf_of,
    open_some,
    sandbox,
    sign_in,
    work,
)
from tests.support import Service, run

PAGES = ("messages", "devices", "live", "exports", "push")


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


def _messages_of(http: httpx.Client, app: str, query: str = "") -> list[str]:
    page = http.get(f"/apps/{app}/messages{query}")
    assert page.status_code == 200, page.text
    return re.findall(rf'href="/apps/{re.escape(app)}/messages/([^"/]+)"', page.text)


def _hwids(svc: Service, n: int, platform: Platform, prefix: str = "d") -> list[str]:
    hwids = [f"{prefix}-{platform.name.lower()}-{i}" for i in range(n)]
    for h in hwids:
        svc.register(h, int(platform))
    return hwids


# -- sign-in, sessions, headers ----------------------------------------------------------


def test_pages_need_a_session_and_sign_in_takes_only_a_live_server_token(svc: Service) -> None:
    http = client(svc)
    for path in ("/", "/apps", *(f"/apps/{svc.app.code}/{p}" for p in PAGES)):
        resp = http.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/signin")
    assert http.post(f"/apps/{svc.app.code}/exports", data={"csrf": "x"}).status_code == 403

    form = http.get("/signin")
    csrf = csrf_of(form.text)
    for bad in ("", "not-a-token", svc.device_token):
        resp = http.post("/signin", data={"csrf": csrf, "token": bad})
        assert resp.status_code == 401, bad
        assert "pt_session" not in http.cookies
        csrf = csrf_of(resp.text)

    resp = http.post("/signin", data={"csrf": csrf, "token": svc.server_token, "next": "/apps"})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/apps"
    cookie = next(v for k, v in resp.headers.multi_items() if v.startswith("pt_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert svc.server_token not in cookie  # sealed, not readable
    home = http.get("/")
    assert home.status_code == 303
    assert home.headers["location"] == f"/apps/{svc.app.code}/messages"


def test_sign_in_redirects_only_within_the_site(svc: Service) -> None:
    http = client(svc)
    for target in ("https://elsewhere.example/", "//elsewhere.example/x", "/\\elsewhere"):
        csrf = csrf_of(http.get("/signin").text)
        resp = http.post("/signin", data={"csrf": csrf, "token": svc.server_token, "next": target})
        assert resp.status_code == 303
        assert resp.headers["location"] == "/", target


def test_the_session_cookie_is_secure_over_tls(svc: Service) -> None:
    # uvicorn takes the scheme a proxy on this host reports (X-Forwarded-Proto)
    http = client(svc, headers={"x-forwarded-proto": "https"})
    form = http.get("/signin")
    signin = next(v for k, v in form.headers.multi_items() if v.startswith("pt_signin="))
    assert "Secure" in signin
    # the client keeps Secure cookies off plain HTTP; send it as a TLS browser would
    value = signin.split(";")[0].split("=", 1)[1]
    resp = http.post(
        "/signin",
        data={"csrf": csrf_of(form.text), "token": svc.server_token},
        headers={"cookie": f"pt_signin={value}"},
    )
    assert resp.status_code == 303
    cookie = next(v for k, v in resp.headers.multi_items() if v.startswith("pt_session="))
    assert "Secure" in cookie


def test_every_page_and_file_carries_strict_security_headers(svc: Service) -> None:
    http = sign_in(svc, svc.server_token)
    paths = [
        "/signin",
        *(f"/apps/{svc.app.code}/{p}" for p in PAGES),
        "/apps/NOPE-NOPE/messages",
        "/static/dash.css",
        "/static/chart.js",
    ]
    for path in paths:
        resp = http.get(path)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["referrer-policy"] == "no-referrer"
        if resp.headers["content-type"].startswith("text/html"):
            # no inline script: every script element loads a file of this site
            assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", resp.text), path
            assert not re.search(r"<[^>]+\son[a-z]+=", resp.text), path  # no inline handlers
            assert resp.headers["cache-control"] == "no-store"


def test_a_tampered_session_or_a_revoked_token_signs_out(shared: Service) -> None:
    svc = shared.fresh_account()
    token = svc.make_token("server")
    http = sign_in(svc, token)
    page = f"/apps/{svc.app.code}/messages"
    assert http.get(page).status_code == 200

    sealed = http.cookies["pt_session"]
    forged = client(svc)
    forged.cookies.set("pt_session", sealed[:-4] + ("AAAA" if sealed[-4:] != "AAAA" else "BBBB"))
    assert forged.get(page).status_code == 303

    assert run(svc.store.revoke_tokens(svc.account, token[:8])) == 1
    deadline = time.monotonic() + 10  # the API's token cache (2 s by default)
    while http.get(page).status_code == 200:
        assert time.monotonic() < deadline, "a revoked token still sees the dashboard"
        time.sleep(0.2)
    assert http.get(page).headers["location"].startswith("/signin")


def test_sign_out_needs_its_csrf_and_ends_the_session(svc: Service) -> None:
    http = sign_in(svc, svc.server_token)
    page = http.get(f"/apps/{svc.app.code}/messages")
    assert http.post("/signout", data={}).status_code == 403
    assert http.post("/signout", data={"csrf": "wrong"}).status_code == 403
    assert http.get(f"/apps/{svc.app.code}/messages").status_code == 200  # still signed in
    resp = http.post("/signout", data={"csrf": csrf_of(page.text)})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/signin"
    assert "pt_session" not in http.cookies
    assert http.get(f"/apps/{svc.app.code}/messages").status_code == 303


def test_forms_without_their_csrf_token_change_nothing(svc: Service) -> None:
    svc.register("csrf-device", 1)
    http = sign_in(svc, svc.server_token)
    before = svc.db.counts()
    export = f"/apps/{svc.app.code}/exports"
    push = f"/apps/{svc.app.code}/push"
    for body in ({}, {"csrf": ""}, {"csrf": "forged"}):
        assert http.post(export, data={"date": "", **body}).status_code == 403
        sent = http.post(push, data={"hwid": "csrf-device", "content": "x", **body})
        assert sent.status_code == 403
        assert "CSRF" in sent.text
    # another session's CSRF value is no good either
    other = sign_in(svc, svc.server_token)
    theirs = csrf_of(other.get(export).text)
    assert http.post(export, data={"csrf": theirs}).status_code == 403
    # a form sent as JSON or multipart is not a form of this site
    mine = csrf_of(http.get(export).text)
    assert http.post(export, json={"csrf": mine}).status_code == 403
    # the sign-in form has its own value, bound to its cookie
    bare = client(svc)
    assert bare.post("/signin", data={"token": svc.server_token}).status_code == 403
    assert svc.db.counts() == before


# -- what a token may see -----------------------------------------------------------------


def test_a_token_for_one_application_never_sees_another(shared: Service) -> None:
    svc = shared.fresh_account()
    mine = svc.app
    theirs = svc.new_app("theirs")
    elsewhere = shared.fresh_account()
    for app in (mine, theirs):
        view = _view(svc, app)
        view.register(f"dev-{app.code}", 1)
        view.send(devices=[f"dev-{app.code}"], content=f"for {app.name}")
    elsewhere.register("dev-elsewhere", 1)
    elsewhere.send(devices=["dev-elsewhere"], content="another account")
    restricted = svc.make_token("server", apps=[mine.code])
    http = sign_in(svc, restricted)
    unrestricted = sign_in(svc, svc.server_token)

    (my_message,) = _messages_of(http, mine.code)
    (their_message,) = _messages_of(unrestricted, theirs.code)
    (foreign,) = _messages_of(sign_in(elsewhere, elsewhere.server_token), elsewhere.app.code)

    apps = http.get("/apps").text
    assert mine.code in apps
    assert theirs.code not in apps
    assert theirs.code in unrestricted.get("/apps").text
    assert elsewhere.app.code not in unrestricted.get("/apps").text

    refused = [
        *(f"/apps/{theirs.code}/{p}" for p in PAGES),
        f"/apps/{theirs.code}/messages/{their_message}",
        f"/apps/{theirs.code}/messages/{their_message}/series",
        f"/apps/{mine.code}/messages/{their_message}",
        f"/apps/{mine.code}/messages/{their_message}/series",
        f"/apps/{mine.code}/messages/{their_message}/failures",
        f"/apps/{theirs.code}/messages/{their_message}/failures",
        f"/apps/{elsewhere.app.code}/messages",
        f"/apps/{mine.code}/messages/{foreign}",
        f"/apps/{mine.code}/devices?kind=hwid&q=dev-{theirs.code}",
        "/apps/NO-SUCH-APP/messages",
    ]
    unknown = http.get("/apps/NO-SUCH-APP/messages")
    for path in refused:
        resp = http.get(path)
        if "devices?" in path:
            # the page is this application's: the other's device has nothing here
            assert resp.status_code == 200
            assert f"dev-{theirs.code}</td>" not in resp.text
            assert "no-events" in resp.text
            continue
        assert resp.status_code == 404, path
        # indistinguishable from what does not exist
        assert resp.text == unknown.text, path
    assert http.get(f"/apps/{mine.code}/messages/{my_message}").status_code == 200
    assert unrestricted.get(f"/apps/{theirs.code}/messages/{their_message}").status_code == 200

    # an export another application's token started is not there for this one
    page = unrestricted.get(f"/apps/{theirs.code}/exports")
    started = unrestricted.post(f"/apps/{theirs.code}/exports", data={"csrf": csrf_of(page.text)})
    assert started.status_code == 303
    rid = started.headers["location"].rsplit("/", 1)[-1]
    assert unrestricted.get(f"/apps/{theirs.code}/exports/{rid}/status").status_code == 200
    assert http.get(f"/apps/{mine.code}/exports/{rid}").status_code == 404
    assert http.get(f"/apps/{mine.code}/exports/{rid}/status").status_code == 404
    # nor may it send to another application
    form = http.get(f"/apps/{mine.code}/push")
    sent = http.post(
        f"/apps/{theirs.code}/push",
        data={"csrf": csrf_of(form.text), "hwid": f"dev-{theirs.code}", "content": "x"},
    )
    assert sent.status_code == 404


def test_a_token_restricted_to_other_methods_is_refused(svc: Service) -> None:
    only_send = svc.make_token("server", methods=["createMessage"])
    http = client(svc)
    csrf = csrf_of(http.get("/signin").text)
    assert http.post("/signin", data={"csrf": csrf, "token": only_send}).status_code == 401
    reader = svc.make_token("server", methods=["getMessageLog"])
    http = sign_in(svc, reader)
    assert http.get(f"/apps/{svc.app.code}/devices").status_code == 200
    assert http.get(f"/apps/{svc.app.code}/messages").status_code == 403
    assert http.get(f"/apps/{svc.app.code}/exports").status_code == 403
    assert http.get(f"/apps/{svc.app.code}/push").status_code == 403


def _view(svc: Service, app: Any) -> Service:
    from dataclasses import replace

    return replace(svc, app=app)


# -- what the pages show -------------------------------------------------------------------


def _v2(svc: Service, method: str, body: dict[str, Any]) -> Any:
    resp = svc.v2(method, body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_messages_page_shows_each_funnel_and_pages_and_filters(svc: Service) -> None:
    sandbox(svc, FAILING, (Platform.IOS,))
    sandbox(svc, CLEAN, (Platform.ANDROID,))
    ios = _hwids(svc, 12, Platform.IOS)
    android = _hwids(svc, 8, Platform.ANDROID)
    first = svc.send(devices=ios + android, content="first", campaign="spring")["Messages"][0]
    for i in range(26):  # more than a page
        svc.send(devices=android[:1], content=f"more {i}", campaign="bulk")
    work(svc)
    opened = open_some(svc, first, every=3)

    http = sign_in(svc, svc.server_token)
    page1 = _messages_of(http, svc.app.code)
    page2 = _messages_of(http, svc.app.code, "?page=2")
    assert len(page1) == 25
    assert page2[-1] == first  # newest first: the first message is the oldest
    assert not set(page1) & set(page2)

    listed = _v2(
        svc,
        "messages:list",
        {"filters": {"application": svc.app.code, "messages_codes": [first]}},
    )["items"][0]["push_info"]["metrics"]
    sends = sum(m["sends"] for m in listed)
    deliveries = sum(m["deliveries"] for m in listed)
    errors = sum(m["errors"] for m in listed)
    assert sends == 20
    assert deliveries + errors == 20
    assert errors > 0
    text = http.get(f"/apps/{svc.app.code}/messages?campaign=spring").text
    assert _messages_of(http, svc.app.code, "?campaign=spring") == [first]
    funnel = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    assert f"{sends} sent" in funnel
    assert f"{deliveries} delivered {100 * deliveries / sends:.1f}%" in funnel
    assert f"{opened} opened {100 * opened / deliveries:.1f}%" in funnel
    assert f"{errors} failed {100 * errors / sends:.1f}%" in funnel

    assert _messages_of(http, svc.app.code, "?platform=iOS") == [first]
    assert len(_messages_of(http, svc.app.code, "?platform=Android&campaign=bulk")) == 25
    today = time.strftime("%Y-%m-%d", time.gmtime(svc.store.clock() / 1e6))
    assert len(_messages_of(http, svc.app.code, f"?from={today}&to={today}")) == 25
    assert _messages_of(http, svc.app.code, "?to=2001-01-01") == []
    for bad in ("?from=yesterday", "?page=0", "?platform=Nokia", "?from=2026-02-02&to=2026-01-01"):
        resp = http.get(f"/apps/{svc.app.code}/messages{bad}")
        assert resp.status_code == 400, bad
        assert 'class="error"' in resp.text


def test_message_detail_chart_failures_and_latest_deliveries(svc: Service) -> None:
    sandbox(svc, FAILING, (Platform.IOS, Platform.ANDROID))
    hwids = _hwids(svc, 10, Platform.IOS) + _hwids(svc, 10, Platform.ANDROID)
    out = svc.send(devices=[*hwids, "never-registered"], content="detail", title="Hello")
    code = out["Messages"][0]
    work(svc)
    open_some(svc, code, every=2)
    http = sign_in(svc, svc.server_token)

    series = http.get(f"/apps/{svc.app.code}/messages/{code}/series").json()
    assert series["interval"] == "minute"
    counted = _v2(
        svc,
        "statistics/messages/totalsByIntervals",
        {"message_code": code, "interval": "minute"},
    )["metrics"]
    expected: dict[int, dict[str, int]] = {}
    for m in counted:
        ts = int(time.mktime(time.strptime(m["timestamp"], "%Y-%m-%d %H:%M:%S")) - time.timezone)
        acc = expected.setdefault(ts, dict.fromkeys(("sends", "deliveries", "opens", "errors"), 0))
        for k in acc:
            acc[k] += int(m[k])
    drawn = {
        t: {k: series[k][i] for k in ("sends", "deliveries", "opens", "errors")}
        for i, t in enumerate(series["t"])
    }
    for ts, values in expected.items():
        assert drawn[ts] == values
    assert all(v == dict.fromkeys(v, 0) for t, v in drawn.items() if t not in expected)
    assert sum(v["sends"] for v in drawn.values()) == 20

    page = http.get(f"/apps/{svc.app.code}/messages/{code}")
    assert page.status_code == 200
    assert "Hello" in page.text
    assert "detail" in page.text
    assert "21: <code>" in page.text  # the targeting: 21 explicit devices
    failed = svc.log(message_code=code, actions=["failed"])
    table = page.text.split('id="failures"')[1].split("</table>")[0]
    cells = r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td class=\"num\">(\d+)</td>"
    rows = re.findall(cells, table)
    grouped: dict[tuple[str, str], int] = {}
    for r in failed:
        key = (r["description"], r["platform"].lower())
        grouped[key] = grouped.get(key, 0) + 1
    assert {(reason, platform.lower()): int(n) for reason, _, platform, n in rows} == grouped
    assert ("Unknown device", "unknown") in grouped or any(
        k[0] == "Unknown device" for k in grouped
    )
    # each group's share of the failures, and its rate of the platform's ended deliveries
    ended: dict[str, int] = {}
    for r in svc.log(message_code=code, actions=["delivered", "failed"]):
        ended[r["platform"].lower()] = ended.get(r["platform"].lower(), 0) + 1
    rated = r"<td class=\"num\">(\d+)</td><td class=\"num share\">(.*?)</td>"
    rated += r"<td class=\"num rate\">(.*?)</td>"
    shares = re.findall(r"<tr><td>(.*?)</td><td>.*?</td><td>(.*?)</td>" + rated, table)
    assert len(shares) == len(rows)
    for reason, platform, n, share, rate in shares:
        assert share == f"{100 * int(n) / len(failed):.1f}%", (reason, platform)
        assert rate == f"{100 * int(n) / ended[platform.lower()]:.1f}%", (reason, platform)

    # the funnel per platform, with its rates, from the counters
    per_platform = page.text.split('id="by-platform"')[1].split("</table>")[0]
    cell = r"<td class=\"num\">(\d+) <i>(.*?)</i></td>"
    shown = {
        found[0].lower(): found[1:]
        for found in re.findall(
            r"<tr><td>([\w ]+)</td><td class=\"num\">(\d+)</td>" + cell * 4 + "</tr>",
            per_platform,
        )
    }
    sent_rows = svc.log(message_code=code, actions=["sent"])
    for platform in ("ios", "android"):
        sends, delivered, d_rate, _, _, opens, o_rate, errors, f_rate = shown[platform]
        assert int(sends) == 10 == sum(1 for r in sent_rows if r["platform"].lower() == platform)
        assert int(errors) == sum(1 for r in failed if r["platform"].lower() == platform)
        assert int(delivered) + int(errors) == 10
        assert d_rate == f"{10 * int(delivered):.1f}%"
        assert f_rate == f"{10 * int(errors):.1f}%"
        assert o_rate == (f"{100 * int(opens) / int(delivered):.1f}%" if int(delivered) else "–")

    # the same table as the fragment a large message's page fetches after showing
    fragment = http.get(f"/apps/{svc.app.code}/messages/{code}/failures")
    assert fragment.status_code == 200
    assert re.findall(cells, fragment.text) == rows
    assert http.get(f"/apps/{svc.app.code}/messages/NOPE/failures").status_code == 404

    latest = page.text.split('id="latest"')[1].split("</table>")[0]
    links = re.findall(r'devices\?kind=code&amp;q=([^"]+)"', latest)
    assert len(links) == 20  # the newest twenty of 21
    timeline = http.get(f"/apps/{svc.app.code}/devices?kind=code&q={links[0]}")
    assert timeline.status_code == 200
    assert "created</span>" in timeline.text


def test_device_timeline_by_hwid_push_token_user_and_code(svc: Service) -> None:
    sandbox(svc, CLEAN, (Platform.IOS,))
    svc.register("tl-device", 1, push_token="tl-push-token")
    assert svc.device("registerUser", hwid="tl-device", userId="tl-user")["status_code"] == 200
    svc.register("tl-other", 1)
    a = svc.send(devices=["tl-device"], content="one")
    b = svc.send(devices=["tl-device", "tl-other"], content="two")
    work(svc)
    http = sign_in(svc, svc.server_token)
    base = f"/apps/{svc.app.code}/devices"

    def shown(kind: str, value: str) -> list[tuple[str, str]]:
        page = http.get(base, params={"kind": kind, "q": value})
        assert page.status_code == 200
        return re.findall(
            r'<span class="status (\w+)">\w+</span></td>\s*<td><a href="[^"]+/messages/([^"]+)"',
            page.text,
        )

    want = sorted(
        (s, m)
        for m in (a["Messages"][0], b["Messages"][0])
        for s in ("created", "sent", "delivered")
    )
    assert sorted(shown("hwid", "tl-device")) == want
    assert sorted(shown("token", "tl-push-token")) == want
    assert sorted(shown("user", "tl-user")) == want
    code = b["TrackingCodes"][0]
    assert sorted(shown("code", code)) == [
        (s, b["Messages"][0]) for s in ("created", "delivered", "sent")
    ]
    assert shown("token", "no-such-token") == []
    assert (
        "No device of this application has that push token"
        in http.get(base, params={"kind": "token", "q": "no-such-token"}).text
    )
    assert http.get(base, params={"kind": "imei", "q": "x"}).status_code == 400


def _trail_rows(html_text: str) -> list[list[str]]:
    """The cells of a trail table's rows, as text."""
    body = html_text.split('<table class="trail">')[1].split("</table>")[0]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def test_device_timeline_shows_reasons_and_times_and_goes_on_page_after_page(
    svc: Service,
) -> None:
    sandbox(svc, FAILING, (Platform.IOS,))
    svc.register("tl-many", 1)
    for i in range(110):  # at least two events each: more than a page of the timeline
        svc.send(devices=["tl-many"], content=f"many {i}")
    work(svc)
    expected = [
        [
            r["timestamp"],
            r["action"],
            r["message_code"],
            r["hwid"],
            r["platform"],
            r["description"],
            r["gateway_id"] or "",
            r["failure_class"] or "",
            str(r["attempts"]),
        ]
        for r in svc.log(application_code=svc.app.code, hwid="tl-many")
    ]
    assert 200 < len(expected) <= 400
    assert any(r[1] == "failed" and r[5] and r[7] for r in expected), "reasons to show"

    http = sign_in(svc, svc.server_token)
    base = f"/apps/{svc.app.code}/devices"
    page = http.get(base, params={"kind": "hwid", "q": "tl-many"})
    shown: list[list[str]] = []
    pages = 0
    while True:
        assert page.status_code == 200
        shown += _trail_rows(page.text)
        pages += 1
        more = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        if more is None:
            break
        page = http.get(base + html.unescape(more.group(1)))
    assert pages == 2
    assert shown == expected


def test_test_push_and_export_from_the_dashboard(svc: Service) -> None:
    sandbox(svc, CLEAN, (Platform.IOS,))
    svc.register("push-me", 1)
    http = sign_in(svc, svc.server_token)
    form = http.get(f"/apps/{svc.app.code}/push")
    resp = http.post(
        f"/apps/{svc.app.code}/push",
        data={"csrf": csrf_of(form.text), "hwid": "push-me", "title": "T", "content": "check"},
    )
    assert resp.status_code == 303
    status_page = resp.headers["location"]
    code = status_page.split("/push/")[1].split("?")[0]
    work(svc)
    trail = http.get(f"/apps/{svc.app.code}/trail", params={"code": code}).json()["data"]
    assert [r["action"] for r in trail] == ["created", "sent", "delivered"]
    assert all(r["hwid"] == "push-me" for r in trail)
    assert http.get(status_page).status_code == 200
    # bad input: named, nothing sent
    before = svc.db.count("messages")
    bad = http.post(
        f"/apps/{svc.app.code}/push", data={"csrf": csrf_of(form.text), "hwid": "", "content": ""}
    )
    assert bad.status_code == 400
    assert "devices" in bad.text or "content" in bad.text
    assert svc.db.count("messages") == before

    page = http.get(f"/apps/{svc.app.code}/exports")
    started = http.post(f"/apps/{svc.app.code}/exports", data={"csrf": csrf_of(page.text)})
    assert started.status_code == 303
    status = started.headers["location"] + "/status"
    assert http.get(status).json()["status"] in ("pending", "running")
    work(svc)
    done = http.get(status).json()
    assert done["status"] == "done"
    # the link is public_url's; the file is served by this server at its path
    zipped = http.get(urlsplit(done["fileName"]).path)
    assert zipped.status_code == 200
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
        (name,) = z.namelist()
        text = z.read(name).decode()
    lines = [line for line in text.splitlines() if f";{code};" in line]
    assert [line.split(";")[4] for line in lines] == ["created", "sent", "delivered"]
    bad = http.post(
        f"/apps/{svc.app.code}/exports", data={"csrf": csrf_of(page.text), "date": "2001-01-01"}
    )
    assert bad.status_code == 400
    assert "retention window" in bad.text


def test_live_stream_sends_new_events_and_resumes_after_the_last_one(svc: Service) -> None:
    sandbox(svc, CLEAN, (Platform.IOS,))
    svc.register("live-device", 1)
    http = sign_in(svc, svc.server_token)
    url = f"/apps/{svc.app.code}/live/stream"
    start = _stream_head(svc)  # where a browser that opened the page now would stand
    code = svc.send(devices=["live-device"], content="live")["TrackingCodes"][0]
    work(svc)

    def read(after: str | None, want: int) -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        params = {"after": after} if after else {}
        with http.stream("GET", url, params=params, timeout=30) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            event_id = None
            for line in resp.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: ") and event_id:
                    got.append((event_id, json.loads(line[6:])))
                    if len(got) == want:
                        return got
        return got

    # a reconnecting browser sends the last event it saw: the stream goes on from there
    events = read(start, 3)
    assert [e["status"] for _, e in events] == ["created", "sent", "delivered"]
    assert {e["tracking_code"] for _, e in events} == {code}
    resumed = read(events[0][0], 2)
    assert [e["status"] for _, e in resumed] == ["sent", "delivered"]


def _stream_head(svc: Service) -> str:
    """The event stream's position now, as the stream names it (``Last-Event-ID``)."""
    from pushtrack.store import stream

    return stream.encode(run(svc.store.stream.head()))


def test_odd_input_is_answered_never_a_server_error(svc: Service) -> None:
    http = sign_in(svc, svc.server_token)
    a = svc.app.code
    odd = ["%00", "x" * 5000, "'\"<script>", "..%2F..%2F", "T-" + "F" * 60, "-1", "１２"]
    paths = []
    for v in odd:
        paths += [
            f"/apps/{v}/messages",
            f"/apps/{a}/messages/{v}",
            f"/apps/{a}/messages/{v}/series",
            f"/apps/{a}/messages/{v}/failures",
            f"/apps/{a}/messages?page={v}&from={v}&to={v}&platform={v}&campaign={v}",
            f"/apps/{a}/devices?kind=hwid&q={v}&after={v}",
            f"/apps/{a}/devices?kind=code&q={v}",
            f"/apps/{a}/devices?kind=token&q={v}",
            f"/apps/{a}/devices?kind=user&q={v}",
            f"/apps/{a}/trail?code={v}",
            f"/apps/{a}/exports/{v}",
            f"/apps/{a}/exports/{v}/status",
            f"/apps/{a}/push/{v}",
            f"/signin?next={v}",
        ]
    for path in paths:
        resp = http.get(path)
        assert resp.status_code < 500, (path, resp.status_code)
        assert "<script>" not in resp.text.replace('<script src="', "")  # escaped, never live
    csrf = csrf_of(http.get(f"/apps/{a}/exports").text)
    for v in odd:
        for form in ({"date": v}, {"hwid": v, "content": v, "title": v}):
            for page in ("exports", "push"):
                resp = http.post(f"/apps/{a}/{page}", data={"csrf": csrf, **form})
                assert resp.status_code < 500, (page, form, resp.status_code)
    raw = http.post(
        f"/apps/{a}/push",
        content=b"csrf=" + csrf.encode() + b"&hwid=\xff\xfe",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert raw.status_code == 403  # not UTF-8: no form, so no CSRF value
