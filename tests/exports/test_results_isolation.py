"""getResults hands a job only to a token that may see every application it reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.exports._support import Clock, clocked_service, run_jobs
from tests.support import Service


def _call(svc: Service, token: str, method: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = svc.call(method, {"auth": token, **fields}).json()
    return out


def _request(svc: Service, token: str, method: str, **fields: Any) -> str:
    out = _call(svc, token, method, **fields)
    assert out["status_code"] == 200, (method, fields, out)
    request_id: str = out["response"]["request_id"]
    return request_id


def test_a_token_restricted_to_one_application_gets_no_other_applications_results(
    database_url: str, tmp_path: Path
) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        mine, theirs = svc.app, svc.new_app("theirs")
        only_mine = svc.make_token("server", apps=[mine.code])
        only_theirs = svc.make_token("server", apps=[theirs.code])
        for app in (mine, theirs):
            svc.device(
                "registerDevice", application=app.code, hwid="hw", push_token="t", device_type=1
            )
        code = {
            app.code: svc.server(
                "createMessage",
                application=app.code,
                notifications=[{"content": "hi", "devices": ["hw"]}],
            )["response"]["Messages"][0]
            for app in (mine, theirs)
        }
        day = {"date_from": "2024-05-01", "date_to": "2024-05-01", "event": "e"}

        def requests(token: str, app: str) -> dict[str, str]:
            return {
                "log of the app": _request(svc, token, "getTrackingLog", application=app),
                "msg stats": _request(svc, token, "getMsgStats", message=code[app]),
                "event stats": _request(svc, token, "getEventStatistics", application=app, **day),
            }

        own = requests(only_mine, mine.code)
        own["log of the token's apps"] = _request(svc, only_mine, "getTrackingLog")
        foreign = requests(svc.server_token, theirs.code)
        foreign["log of the account"] = _request(svc, svc.server_token, "getTrackingLog")
        foreign["log of another token's apps"] = _request(svc, only_theirs, "getTrackingLog")
        unknown = "0" * len(own["msg stats"])

        def refused_like_unknown(request_id: str) -> bool:
            out = _call(svc, only_mine, "getResults", request_id=request_id)
            like = _call(svc, only_mine, "getResults", request_id=unknown)
            like["status_message"] = like["status_message"].replace(unknown, request_id)
            return bool(out == like and out["status_code"] == 210)

        for done in (False, True):
            for what, request_id in own.items():
                out = _call(svc, only_mine, "getResults", request_id=request_id)
                assert out["status_code"] == 200, (what, done, out)
            for what, request_id in foreign.items():
                assert refused_like_unknown(request_id), (what, done)
                # the unrestricted token still sees every one of them
                out = _call(svc, svc.server_token, "getResults", request_id=request_id)
                assert out["status_code"] == 200, (what, done, out)
            run_jobs(svc.store, settings)
