"""Every route of the dashboard, taken from its route table: a route added later without
a place here fails these tests.

For each route: another application's (and another account's) things are "Not found.",
the same answer as what does not exist, whether asked for under their application or
under one the token may see; every answer carries the security headers; every form
post needs its CSRF value and changes nothing without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.routing import Mount, Route

from pushtrack.api.context import Context
from pushtrack.dashboard.app import SECURITY_HEADERS, Dashboard
from pushtrack.domain.platforms import Platform
from tests.dashboard._support import CLEAN, client, csrf_of, sandbox, sign_in, work
from tests.support import Service, run


def _routes(svc: Service) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route the dashboard serves (Mounts as their path)."""
    assert svc.settings is not None
    dashboard = Dashboard(Context.build(svc.settings, svc.store), None)
    out = []
    for r in dashboard.routes():
        if isinstance(r, Route):
            out.append((r.path, set(r.methods or ())))
        elif isinstance(r, Mount):
            out.append((r.path, {"GET"}))
    return out


def _app_routes(svc: Service) -> set[str]:
    return {path for path, _ in _routes(svc) if "{app}" in path}


class World:
    """Two applications of one account (mine, theirs) and one of another account, each
    with a device (push token, user id) and a message sent to it, and an export."""

    def __init__(self, shared: Service) -> None:
        svc = shared.fresh_account()
        self.svc = svc
        self.mine = svc.app
        self.theirs = svc.new_app("theirs")
        self.other_account = shared.fresh_account()
        self.tracking: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        for key, view in (
            ("mine", svc),
            ("theirs", replace(svc, app=self.theirs)),
            ("elsewhere", self.other_account),
        ):
            sandbox(view, CLEAN, (Platform.IOS,))
            view.register(f"dev-{key}", 1, push_token=f"push-{key}")
            reg = view.device("registerUser", hwid=f"dev-{key}", userId=f"user-{key}")
            assert reg["status_code"] == 200
            out = view.send(devices=[f"dev-{key}"], content=f"for {key}", campaign=f"c-{key}")
            self.messages[key] = out["Messages"][0]
            self.tracking[key] = out["TrackingCodes"][0]
        work(svc)
        self.restricted = svc.make_token("server", apps=[self.mine.code])
        self.unrestricted = sign_in(svc, svc.server_token)
        self.elsewhere = sign_in(self.other_account, self.other_account.server_token)
        self.exports = {
            "mine": self._export(self.unrestricted, self.mine.code),
            "theirs": self._export(self.unrestricted, self.theirs.code),
            "elsewhere": self._export(self.elsewhere, self.other_account.app.code),
        }

    @staticmethod
    def _export(http: httpx.Client, app: str) -> str:
        page = http.get(f"/apps/{app}/exports")
        started = http.post(f"/apps/{app}/exports", data={"csrf": csrf_of(page.text)})
        assert started.status_code == 303, started.text
        return str(started.headers["location"].rsplit("/", 1)[-1])


@pytest.fixture
def world(shared: Service) -> World:
    return World(shared)


def test_a_token_for_one_application_is_refused_every_route_of_another(world: World) -> None:
    svc = world.svc
    http = sign_in(svc, world.restricted)
    M = world.mine.code
    T = world.theirs.code
    E = world.other_account.app.code
    tm, em = world.messages["theirs"], world.messages["elsewhere"]
    tc, ec = world.tracking["theirs"], world.tracking["elsewhere"]
    tr, er = world.exports["theirs"], world.exports["elsewhere"]

    # each route: URLs that must be "Not found." exactly as an unknown application is
    refused: dict[str, list[str]] = {
        "/apps/{app}/messages": [f"/apps/{T}/messages", f"/apps/{E}/messages"],
        "/apps/{app}/messages/{code}": [
            f"/apps/{T}/messages/{tm}",
            f"/apps/{M}/messages/{tm}",
            f"/apps/{M}/messages/{em}",
            f"/apps/{E}/messages/{em}",
        ],
        "/apps/{app}/messages/{code}/failures": [
            f"/apps/{T}/messages/{tm}/failures",
            f"/apps/{M}/messages/{tm}/failures",
            f"/apps/{M}/messages/{em}/failures",
        ],
        "/apps/{app}/messages/{code}/series": [
            f"/apps/{T}/messages/{tm}/series",
            f"/apps/{M}/messages/{tm}/series",
            f"/apps/{M}/messages/{em}/series",
        ],
        "/apps/{app}/devices": [f"/apps/{T}/devices?kind=hwid&q=dev-theirs", f"/apps/{E}/devices"],
        "/apps/{app}/trail": [f"/apps/{T}/trail?code={tc}", f"/apps/{E}/trail?code={ec}"],
        "/apps/{app}/exports": [f"/apps/{T}/exports", f"/apps/{E}/exports"],
        "/apps/{app}/exports/{rid}": [
            f"/apps/{T}/exports/{tr}",
            f"/apps/{M}/exports/{tr}",
            f"/apps/{M}/exports/{er}",
        ],
        "/apps/{app}/exports/{rid}/status": [
            f"/apps/{T}/exports/{tr}/status",
            f"/apps/{M}/exports/{tr}/status",
            f"/apps/{M}/exports/{er}/status",
        ],
        "/apps/{app}/push": [f"/apps/{T}/push", f"/apps/{E}/push"],
        "/apps/{app}/push/{code}": [
            f"/apps/{T}/push/{tc}",
            f"/apps/{M}/push/{tc}",
            f"/apps/{M}/push/{ec}",
        ],
        "/apps/{app}/live": [f"/apps/{T}/live", f"/apps/{E}/live"],
        "/apps/{app}/live/stream": [f"/apps/{T}/live/stream", f"/apps/{E}/live/stream"],
    }
    assert set(refused) == _app_routes(svc), "a dashboard route has no isolation check"

    unknown = http.get("/apps/NO-SUCH-APP/messages")
    assert unknown.status_code == 404
    for template, paths in refused.items():
        for path in paths:
            resp = http.get(path)
            assert resp.status_code == 404, (template, path, resp.status_code)
            assert resp.text == unknown.text, path  # indistinguishable from nothing

    # forms posted to another application's pages: refused, nothing made
    before = svc.db.counts()
    csrf = csrf_of(http.get(f"/apps/{M}/push").text)
    for app in (T, E):
        sent = http.post(
            f"/apps/{app}/push", data={"csrf": csrf, "hwid": "dev-theirs", "content": "x"}
        )
        assert sent.status_code == 404
        assert sent.text == unknown.text
        started = http.post(f"/apps/{app}/exports", data={"csrf": csrf, "date": ""})
        assert started.status_code == 404
    assert svc.db.counts() == before

    # under its own application, the other's device, user and codes have nothing
    for kind, value in (
        ("hwid", "dev-theirs"),
        ("token", "push-theirs"),
        ("user", "user-theirs"),
        ("code", tc),
        ("hwid", "dev-elsewhere"),
        ("token", "push-elsewhere"),
        ("user", "user-elsewhere"),
        ("code", ec),
    ):
        page = http.get(f"/apps/{M}/devices", params={"kind": kind, "q": value})
        assert page.status_code == 200
        assert 'class="trail"' not in page.text, (kind, value)
        assert world.messages["theirs"] not in page.text
        assert world.messages["elsewhere"] not in page.text
    for code in (tc, ec):
        assert http.get(f"/apps/{M}/trail", params={"code": code}).json() == {"data": []}
    # nor is it listed, whatever the filters
    listed = http.get(f"/apps/{M}/messages", params={"campaign": "c-theirs"})
    assert listed.status_code == 200
    assert tm not in listed.text
    apps = http.get("/apps").text
    assert M in apps
    assert T not in apps
    assert E not in apps

    # what the token may see is there (the refusals above are not of everything)
    mine_m, mine_c = world.messages["mine"], world.tracking["mine"]
    for path in (
        f"/apps/{M}/messages/{mine_m}",
        f"/apps/{M}/push/{mine_c}",
        f"/apps/{M}/exports/{world.exports['mine']}",
    ):
        assert http.get(path).status_code == 200, path
    assert http.get(f"/apps/{M}/trail", params={"code": mine_c}).json()["data"]


def test_the_live_stream_of_one_application_carries_none_of_another(world: World) -> None:
    from pushtrack.store import stream

    svc = world.svc
    start = stream.encode(run(svc.store.stream.head()))
    theirs = replace(svc, app=world.theirs)
    # theirs first: were the stream not filtered, its events would come first
    their_code = theirs.send(devices=["dev-theirs"], content="theirs live")["TrackingCodes"][0]
    other = world.other_account.send(devices=["dev-elsewhere"], content="elsewhere live")
    mine_code = svc.send(devices=["dev-mine"], content="mine live")["TrackingCodes"][0]
    work(svc)
    http = sign_in(svc, world.restricted)
    got: list[dict[str, Any]] = []
    with http.stream(
        "GET", f"/apps/{world.mine.code}/live/stream", params={"after": start}, timeout=30
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
                if len(got) == 3:
                    break
    assert [e["status"] for e in got] == ["created", "sent", "delivered"]
    assert {e["tracking_code"] for e in got} == {mine_code}
    assert {e["application_code"] for e in got} == {world.mine.code}
    assert their_code not in str(got)
    assert other["TrackingCodes"][0] not in str(got)


def _headers_ok(resp: httpx.Response, path: str) -> None:
    for key, value in SECURITY_HEADERS.items():
        if key == "cache-control" and path.startswith("/static/"):
            assert resp.headers[key] == "public, max-age=3600", path
            continue
        assert resp.headers.get(key) == value, (path, key, resp.headers.get(key))
    if resp.headers.get("content-type", "").startswith("text/html"):
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", resp.text), path
        assert not re.search(r"<[^>]+\son[a-z]+=", resp.text), path
        assert not re.search(r"<style|\sstyle=", resp.text), path


def test_every_route_answers_with_the_security_headers(world: World) -> None:
    svc = world.svc
    M = world.mine.code
    m, c, rid = world.messages["mine"], world.tracking["mine"], world.exports["mine"]
    http = sign_in(svc, svc.server_token)
    csrf = csrf_of(http.get(f"/apps/{M}/push").text)
    # each route: requests that show what it shows (filled, not empty pages)
    shown: dict[str, list[tuple[str, str, dict[str, str] | None, int]]] = {
        "/": [("GET", "/", None, 200)],  # two applications: the list
        "/signin": [("GET", "/signin", None, 200)],
        "/signout": [("POST", "/signout", {"csrf": "wrong"}, 403)],
        "/apps": [("GET", "/apps", None, 200)],
        "/apps/{app}/messages": [("GET", f"/apps/{M}/messages", None, 200)],
        "/apps/{app}/messages/{code}": [("GET", f"/apps/{M}/messages/{m}", None, 200)],
        "/apps/{app}/messages/{code}/failures": [
            ("GET", f"/apps/{M}/messages/{m}/failures", None, 200)
        ],
        "/apps/{app}/messages/{code}/series": [
            ("GET", f"/apps/{M}/messages/{m}/series", None, 200)
        ],
        "/apps/{app}/devices": [("GET", f"/apps/{M}/devices?kind=hwid&q=dev-mine", None, 200)],
        "/apps/{app}/trail": [("GET", f"/apps/{M}/trail?code={c}", None, 200)],
        "/apps/{app}/exports": [
            ("GET", f"/apps/{M}/exports", None, 200),
            ("POST", f"/apps/{M}/exports", {"csrf": csrf, "date": "2001-01-01"}, 400),
            ("POST", f"/apps/{M}/exports", {"csrf": csrf}, 303),
        ],
        "/apps/{app}/exports/{rid}": [("GET", f"/apps/{M}/exports/{rid}", None, 200)],
        "/apps/{app}/exports/{rid}/status": [("GET", f"/apps/{M}/exports/{rid}/status", None, 200)],
        "/apps/{app}/push": [
            ("GET", f"/apps/{M}/push", None, 200),
            ("POST", f"/apps/{M}/push", {"csrf": csrf, "hwid": "", "content": ""}, 400),
        ],
        "/apps/{app}/push/{code}": [("GET", f"/apps/{M}/push/{c}", None, 200)],
        "/apps/{app}/live": [("GET", f"/apps/{M}/live", None, 200)],
        "/apps/{app}/live/stream": [("STREAM", f"/apps/{M}/live/stream", None, 200)],
        "/static": [
            ("GET", "/static/dash.css", None, 200),
            ("GET", "/static/uPlot.iife.min.js", None, 200),
        ],
    }
    assert set(shown) == {p for p, _ in _routes(svc)}, "a dashboard route has no header check"
    for template, requests in shown.items():
        for method, path, form, status in requests:
            if method == "STREAM":
                with http.stream("GET", path, timeout=30) as resp:
                    assert resp.status_code == status, path
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    _headers_ok(resp, path)
                continue
            resp = http.request(method, path, data=form)
            assert resp.status_code == status, (template, path, resp.status_code, resp.text[:300])
            _headers_ok(resp, path)
    # signed out: the redirects to sign in and the refusals carry them too
    bare = client(svc)
    for path in (f"/apps/{M}/messages", f"/apps/{M}/live/stream", "/"):
        resp = bare.get(path)
        assert resp.status_code == 303
        _headers_ok(resp, path)
    refused = bare.post(f"/apps/{M}/push", data={"csrf": "x"})
    assert refused.status_code == 403
    _headers_ok(refused, "/apps/push")


def test_every_form_route_refuses_a_post_without_its_csrf_value(world: World) -> None:
    svc = world.svc
    M = world.mine.code
    http = sign_in(svc, svc.server_token)
    forms: dict[str, tuple[str, dict[str, str]]] = {
        "/signout": ("/signout", {}),
        "/apps/{app}/exports": (f"/apps/{M}/exports", {"date": ""}),
        "/apps/{app}/push": (f"/apps/{M}/push", {"hwid": "dev-mine", "content": "x"}),
    }
    posted = {path for path, methods in _routes(svc) if "POST" in methods}
    assert set(forms) | {"/signin"} == posted, "a form route has no CSRF check"
    before = svc.db.counts()
    theirs = csrf_of(sign_in(svc, svc.server_token).get(f"/apps/{M}/push").text)
    for _, (path, fields) in forms.items():
        for csrf in (None, "", "forged", theirs):
            body = dict(fields) if csrf is None else {**fields, "csrf": csrf}
            resp = http.post(path, data=body)
            assert resp.status_code == 403, (path, csrf)
            assert "CSRF" in resp.text
    # the sign-in form: its value is bound to the pt_signin cookie
    bare = client(svc)
    assert bare.post("/signin", data={"token": svc.server_token}).status_code == 403
    other = client(svc)
    value = csrf_of(other.get("/signin").text)
    refused = bare.post("/signin", data={"csrf": value, "token": svc.server_token})
    assert refused.status_code == 403
    assert "pt_session" not in bare.cookies
    assert svc.db.counts() == before
    # still signed in: the refused sign-out did not end the session
    assert http.get(f"/apps/{M}/messages").status_code == 200
