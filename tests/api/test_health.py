"""The probes: /health and /healthz touch nothing, /readyz asks the store."""

from __future__ import annotations

from tests.support import Service, run


def test_healthz_and_readyz_when_all_is_well(svc: Service) -> None:
    for path in ("/health", "/healthz"):
        resp = svc.http.get(path)
        assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    resp = svc.http.get("/readyz")
    assert (resp.status_code, resp.json()) == (200, {"status": "ready"})


def test_readyz_is_503_when_the_schema_is_not_current(svc: Service) -> None:
    applied, known = run(svc.store.schema_versions())
    assert applied == known > 0
    if svc.store.url.startswith("sqlite"):
        svc.db.execute(f"PRAGMA user_version = {known - 1}")
    else:
        svc.db.execute(f"DELETE FROM schema_version WHERE version = {known}")
    resp = svc.http.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {
        "status": "unavailable",
        "problems": [f"store: schema at migration {known - 1}, this pushtrack expects {known}"],
    }


def test_readyz_is_503_when_the_store_is_gone_and_healthz_still_ok(svc: Service) -> None:
    run(svc.store.close())
    resp = svc.http.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["status"] == "unavailable"
    assert len(body["problems"]) == 1, body
    assert body["problems"][0].startswith("store: "), body
    assert svc.http.get("/healthz").status_code == 200
    assert svc.http.get("/health").json() == {"status": "ok"}


def test_readyz_is_503_when_the_processs_worker_has_stopped(svc: Service) -> None:
    import httpx

    from pushtrack.api.app import create_app
    from pushtrack.api.context import Context
    from tests.support import ServerThread

    assert svc.settings is not None
    alive = {"worker": True}
    ctx = Context.build(svc.settings, svc.store)
    ctx.worker_alive = lambda: alive["worker"]
    with ServerThread(create_app(ctx), svc.settings) as srv:
        assert httpx.get(f"{srv.url}/readyz").status_code == 200
        alive["worker"] = False
        resp = httpx.get(f"{srv.url}/readyz")
        assert resp.status_code == 503
        assert resp.json()["problems"] == ["worker: the worker of this process has stopped"]
