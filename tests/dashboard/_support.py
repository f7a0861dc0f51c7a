"""What the dashboard tests share: signing in over HTTP, sandbox data, reading pages."""

from __future__ import annotations

import re
from typing import Any

import httpx

from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import Status
from pushtrack.worker import build_worker
from tests.support import Service, run

#: Every notification is accepted: outcomes a test can count on.
CLEAN = {"failure_rate": 0.0, "retry_rate": 0.0}
#: Half fail, with the platform gateway's reasons; the rest are delivered.
FAILING = {"failure_rate": 0.5, "retry_rate": 0.0, "seed": 7}

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


#: Clients a test opened; the ``_close_clients`` fixture closes them after each test.
OPEN: list[httpx.Client] = []


def client(svc: Service, **kw: Any) -> httpx.Client:
    http = httpx.Client(base_url=svc.url, timeout=30, follow_redirects=False, **kw)
    OPEN.append(http)
    return http


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


def sign_in(svc: Service, token: str, **kw: Any) -> httpx.Client:
    """A browser-like client signed in to the dashboard with ``token``."""
    http = client(svc, **kw)
    form = http.get("/signin")
    assert form.status_code == 200
    done = http.post("/signin", data={"csrf": csrf_of(form.text), "token": token, "next": "/"})
    assert done.status_code == 303, done.text
    assert "pt_session" in http.cookies
    return http


def sandbox(svc: Service, settings: dict[str, Any], platforms: tuple[Platform, ...]) -> None:
    for p in platforms:
        run(svc.store.dispatch.set_gateway(svc.account, svc.app.code, int(p), "sandbox", settings))


def work(svc: Service, seconds: float = 30) -> None:
    """Run a worker over the service's store until nothing is due."""
    assert svc.settings is not None
    run(build_worker(svc.settings, svc.store, poll_seconds=0.02).run_until_idle(seconds))


def open_some(svc: Service, message: str, every: int) -> int:
    """Report every ``every``-th delivered delivery of ``message`` opened; how many."""
    app = svc.app
    delivered = run(svc.store.dashboard.delivered(app.id, message))
    opened = 0
    for i, (hwid, payload_hash) in enumerate(sorted(delivered)):
        if i % every == 0:
            assert run(svc.store.record_device_report(app, hwid, payload_hash, Status.OPENED))
            opened += 1
    return opened
