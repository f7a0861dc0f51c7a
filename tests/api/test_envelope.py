"""Every row of the JSON 1.3 envelope table, over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import Service, service

OK = {"status_code": 200, "status_message": "OK"}


def envelope(resp) -> tuple[int, int, str]:  # type: ignore[no-untyped-def]
    body = resp.json()
    assert set(body) == {"status_code", "status_message", "response"}
    return resp.status_code, body["status_code"], body["status_message"]


def test_success_envelope(svc: Service) -> None:
    resp = svc.call(
        "registerDevice",
        {"application": svc.app.code, "hwid": "h1", "device_type": 1, "push_token": "t"},
        headers={"Authorization": f"Token {svc.device_token}"},
    )
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {**OK, "response": None}


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b"[1,2]", b'{"request": 5}', b'{"req": {}}', b'{"request": [1]}', b"\xff"],
)
def test_malformed_body_is_400(svc: Service, body: bytes) -> None:
    resp = svc.http.post("/json/1.3/createMessage", content=body)
    assert envelope(resp) == (400, 400, "Malformed request string")


def test_argument_error_names_the_field(svc: Service) -> None:
    out = svc.server("createMessage", notifications=[{"content": "x", "platforms": ["ios"]}])
    assert out["status_code"] == 210
    assert "platforms" in out["status_message"]
    out = svc.server("createMessage")
    assert out["status_code"] == 210
    assert "notifications" in out["status_message"]


def test_unknown_application_is_210(svc: Service) -> None:
    body = {
        "auth": svc.server_token,
        "application": "00000-00000",
        "notifications": [{"content": "x"}],
    }
    resp = svc.call("createMessage", body)
    assert envelope(resp)[:2] == (200, 210)
    assert "application" in resp.json()["status_message"]


@pytest.mark.parametrize("auth", [None, "", "wrong-token", 12])
def test_missing_or_unknown_token_is_401(svc: Service, auth: object) -> None:
    body = {"application": svc.app.code, "notifications": [{"content": "x"}]}
    if auth is not None:
        body["auth"] = auth
    resp = svc.call("createMessage", body)
    assert envelope(resp) == (401, 401, "Access denied or application not found")


def test_device_call_without_token_is_401(svc: Service) -> None:
    resp = svc.call("registerDevice", {"application": svc.app.code, "hwid": "h", "device_type": 1})
    assert envelope(resp)[:2] == (401, 401)
    resp = svc.call(
        "registerDevice",
        {"application": svc.app.code, "hwid": "h", "device_type": 1},
        headers={"Authorization": "Token nope"},
    )
    assert envelope(resp)[:2] == (401, 401)
    resp = svc.call(
        "registerDevice",
        {"application": svc.app.code, "hwid": "h", "device_type": 1},
        headers={"Authorization": "Basic abc"},
    )
    assert envelope(resp)[:2] == (401, 401)
    assert svc.db.count("devices") == 0


def test_revoked_token_is_401(database_url: str) -> None:
    from tests.support import run

    with service(database_url, cache_seconds=0.05) as svc:
        raw = svc.make_token("server")
        body = {"auth": raw, "application": svc.app.code, "notifications": [{"content": "x"}]}
        assert svc.call("createMessage", body).json()["status_code"] == 200
        assert run(svc.store.revoke_tokens("default", raw[:8])) == 1
        time.sleep(0.1)  # past the injected cache lifetime
        assert envelope(svc.call("createMessage", body))[:2] == (401, 401)


def test_token_restricted_to_another_app_is_403(svc: Service) -> None:
    from tests.support import run

    other = run(svc.store.create_app("default", "other"))
    only_other = svc.make_token("server", apps=[other.code])
    body = {"auth": only_other, "application": svc.app.code, "notifications": [{"content": "x"}]}
    assert envelope(svc.call("createMessage", body)) == (
        403,
        403,
        "Token restrictions forbid this operation",
    )
    body["application"] = other.code
    assert svc.call("createMessage", body).json()["status_code"] == 200
    assert svc.db.count("messages") == 1


def test_token_restricted_by_method_is_403(svc: Service) -> None:
    only_delete = svc.make_token("server", methods=["deleteMessage"])
    body = {"auth": only_delete, "application": svc.app.code, "notifications": [{"content": "x"}]}
    assert envelope(svc.call("createMessage", body))[:2] == (403, 403)
    assert svc.db.count("messages") == 0


def test_device_token_cannot_call_server_methods(svc: Service) -> None:
    body = {
        "auth": svc.device_token,
        "application": svc.app.code,
        "notifications": [{"content": "x"}],
    }
    assert envelope(svc.call("createMessage", body))[:2] == (403, 403)
    resp = svc.v2("statistics/getMessageLog", {"hwid": "x"}, token=svc.device_token)
    assert resp.status_code == 403
    assert svc.db.count("messages") == 0


def test_token_of_another_account_sees_no_application(svc: Service) -> None:
    stranger = svc.make_token("server", account="someone-else")
    body = {"auth": stranger, "application": svc.app.code, "notifications": [{"content": "x"}]}
    out = svc.call("createMessage", body).json()
    assert out["status_code"] == 210
    assert svc.db.count("messages") == 0


def test_unknown_method_is_404(svc: Service) -> None:
    resp = svc.call("noSuchMethod", {"auth": svc.server_token})
    assert envelope(resp) == (404, 404, "Method not found")


def test_body_too_large_is_413(tmp_path: Path) -> None:
    with service(f"sqlite:///{tmp_path}/big.db", max_body_bytes=2048) as s:
        big = {
            "auth": s.server_token,
            "application": s.app.code,
            "notifications": [{"content": "x" * 4000}],
        }
        resp = s.call("createMessage", big)
        assert envelope(resp) == (413, 413, "Request too large")

        # also when the client streams without a length
        def chunks():  # type: ignore[no-untyped-def]
            yield b'{"request": {"x": "'
            yield b"y" * 4096
            yield b'"}}'

        resp = s.http.post("/json/1.3/createMessage", content=chunks())
        assert envelope(resp)[:2] == (413, 413)
        assert s.db.count("messages") == 0


def test_rate_limit_is_429(tmp_path: Path) -> None:
    with service(f"sqlite:///{tmp_path}/rl.db", rate_limit=1, rate_burst=3) as s:
        answers = [
            s.device("registerDevice", hwid=f"h{i}", device_type=1)["status_code"] for i in range(6)
        ]
        assert answers[:3] == [200, 200, 200]
        assert 429 in answers[3:]
        resp = s.call(
            "registerDevice",
            {"application": s.app.code, "hwid": "z", "device_type": 1},
            headers={"Authorization": f"Token {s.device_token}"},
        )
        assert envelope(resp) == (429, 429, "Rate limit exceeded")
        assert resp.headers["retry-after"] == "1"
        assert s.db.count("devices") == 3


def test_429_says_when_to_retry_in_both_families(tmp_path: Path) -> None:
    # one request every 4 seconds: an empty bucket refills in 1-4 seconds
    with service(f"sqlite:///{tmp_path}/rl.db", rate_limit=0.25, rate_burst=1) as s:
        assert s.server("getTrackingLog")["status_code"] == 200
        resp = s.call("getTrackingLog", {"auth": s.server_token})
        assert envelope(resp) == (429, 429, "Rate limit exceeded")
        assert 1 <= int(resp.headers["retry-after"]) <= 4
        other = s.make_token("server")
        assert (
            s.v2("messages:list", {"filters": {"application": s.app.code}}, other).status_code
            == 200
        )
        resp = s.v2("messages:list", {"filters": {"application": s.app.code}}, other)
        assert resp.status_code == 429
        assert resp.json() == {"error": "Rate limit exceeded"}
        assert 1 <= int(resp.headers["retry-after"]) <= 4
        ok = s.call("getTrackingLog", {"auth": s.make_token("server")})
        assert "retry-after" not in ok.headers


def test_messages_per_minute_per_application(tmp_path: Path) -> None:
    with service(f"sqlite:///{tmp_path}/rl.db", messages_per_minute=2) as s:
        s.register("d1")
        other = s.new_app("other")
        for _ in range(2):
            assert (
                s.server("createMessage", notifications=[{"content": "x", "devices": ["d1"]}])[
                    "status_code"
                ]
                == 200
            )
        # another token does not help: the limit is the application's
        resp = s.call(
            "createMessage",
            {
                "auth": s.make_token("server"),
                "application": s.app.code,
                "notifications": [{"content": "x", "devices": ["d1"]}],
            },
        )
        assert envelope(resp) == (429, 429, "Rate limit exceeded")
        assert 1 <= int(resp.headers["retry-after"]) <= 30
        targeted = s.server(
            "createTargetedMessage",
            application=None,
            content="x",
            devices_filter=f'A("{s.app.code}")',
        )
        assert targeted["status_code"] == 429
        assert s.db.count("messages") == 2
        # another application has its own allowance
        out = s.server(
            "createMessage",
            application=other.code,
            notifications=[{"content": "x", "devices": ["d1"]}],
        )
        assert out["status_code"] == 200


def test_internal_fault_is_500_without_detail(svc: Service) -> None:
    svc.db.execute("DROP TABLE devices")
    resp = svc.call(
        "registerDevice",
        {"application": svc.app.code, "hwid": "h1", "device_type": 1},
        headers={"Authorization": f"Token {svc.device_token}"},
    )
    assert envelope(resp) == (500, 500, "Internal error")
    assert "devices" not in resp.text
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("verb", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_http_methods_are_405_in_the_envelope(svc: Service, verb: str) -> None:
    resp = svc.http.request(verb, "/json/1.3/createMessage")
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["allow"] == "POST"
    assert resp.status_code == 405
    assert resp.json() == {
        "status_code": 405,
        "status_message": "Method not allowed",
        "response": None,
    }
    resp = svc.http.request(verb, "/api/v2/statistics/getMessageLog")
    assert (resp.status_code, resp.headers["allow"]) == (405, "POST")
    assert resp.json() == {"error": "Method not allowed"}
    # not an API route: Starlette's own answer stays
    health = svc.http.post("/health")
    assert (health.status_code, health.text) == (405, "Method Not Allowed")
