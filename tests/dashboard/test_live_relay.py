"""The Live page relays the API's event stream when the service answers it.

The stream's contract (``GET /api/v2/events/stream``: a server token in the
Authorization header; ``app``, ``hwid``, ``message``, ``status`` filters;
``Last-Event-ID``) is spoken here by a stand-in route added to the real application,
which records what it was asked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pushtrack import config
from pushtrack.api import auth
from pushtrack.api.app import create_app
from pushtrack.api.context import Context
from pushtrack.api.message_log import encode_cursor
from pushtrack.domain import codes
from pushtrack.domain.timeutil import now_us
from pushtrack.store import open_store
from pushtrack.store.base import DeviceIn
from tests.dashboard._support import csrf_of
from tests.support import ServerThread, run

ASKED: list[dict[str, Any]] = []
#: The stand-in refuses every request (as for a token restricted to other methods).
REFUSE: list[bool] = []


async def _stand_in(request: Request) -> Response:
    ASKED.append(
        {
            "authorization": request.headers.get("authorization"),
            "last_event_id": request.headers.get("last-event-id"),
            "query": dict(request.query_params),
        }
    )
    unknown = set(request.query_params) - {"application", "hwid", "message", "status"}
    if unknown or REFUSE:
        return Response(status_code=400 if unknown else 403)
    start = int(request.headers.get("last-event-id") or 0)

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        for i in range(start + 1, start + 4):
            yield f'id: {i}\nevent: sent\ndata: {{"n": {i}}}\n\n'.encode()

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    url = f"sqlite:///{tmp_path}/p.db"
    store = open_store(url)
    try:
        app = run(store.create_app("default", "relay"))
        raw = codes.secret_token()
        run(
            store.create_token(
                "default", "server", auth.hash_token(raw), auth.prefix_of(raw), None, None
            )
        )
        cfg = config.load({"database": url}, env={})
        asgi = create_app(Context.build(cfg, store))
        asgi.router.routes.insert(0, Route("/api/v2/events/stream", _stand_in, methods=["GET"]))
        with ServerThread(asgi, cfg) as srv:
            yield srv.url, app.code, raw, url
    finally:
        run(store.close())


def _frames(http: httpx.Client, path: str, **params: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    with http.stream("GET", path, params=params) as resp:
        assert resp.status_code == 200
        event_id = ""
        for line in resp.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                out.append((event_id, line[6:]))
    return out


def test_live_relays_the_event_stream_as_the_signed_in_token(
    served: tuple[str, str, str, str],
) -> None:
    base, app, token, _ = served
    ASKED.clear()
    with httpx.Client(base_url=base, timeout=30) as http:
        form = http.get("/signin")
        http.post("/signin", data={"csrf": csrf_of(form.text), "token": token})
        path = f"/apps/{app}/live/stream"
        assert _frames(http, path, hwid="h-1", status="failed") == [
            ("1", '{"n": 1}'),
            ("2", '{"n": 2}'),
            ("3", '{"n": 3}'),
        ]
        # resumed after the last event shown: the stream is asked from there
        assert [i for i, _ in _frames(http, path, after="3")] == ["4", "5", "6"]
    assert ASKED[0] == {
        "authorization": f"Token {token}",
        "last_event_id": None,
        "query": {"application": app, "hwid": "h-1", "status": "failed"},
    }
    assert ASKED[1]["last_event_id"] == "3"
    assert ASKED[1]["query"] == {"application": app}


def test_live_follows_the_trail_when_the_event_stream_refuses(
    served: tuple[str, str, str, str],
) -> None:
    base, app, token, url = served
    ASKED.clear()
    REFUSE.append(True)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            form = http.get("/signin")
            http.post("/signin", data={"csrf": csrf_of(form.text), "token": token})
            store = open_store(url)
            try:
                created = run(store.get_app(app))
                assert created is not None
                run(store.register_device(created, DeviceIn(hwid="follow-me", device_type=1)))
            finally:
                run(store.close())
            sent = http.post(
                "/json/1.3/createMessage",
                json={
                    "request": {
                        "auth": token,
                        "application": app,
                        "notifications": [{"content": "x", "devices": ["follow-me"]}],
                    }
                },
            ).json()
            assert sent["status_code"] == 200, sent
            # from an hour back (a resuming browser's position): the message's created
            got: list[dict[str, Any]] = []
            after = encode_cursor(now_us() - 3600 * 10**6, 0)
            with http.stream("GET", f"/apps/{app}/live/stream", params={"after": after}) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        got.append(json.loads(line[6:]))
                        break
        assert ASKED, "the event stream was asked first"
        assert got[0]["status"] == "created"
        assert got[0]["hwid"] == "follow-me"
    finally:
        REFUSE.clear()
