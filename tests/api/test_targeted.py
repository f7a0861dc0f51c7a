"""createTargetedMessage over HTTP: a filter expression, one message per application named."""

from __future__ import annotations

from typing import Any

import pytest

from pushtrack.domain.codes import MESSAGE_CODE_RE
from pushtrack.store.base import App, DeviceIn
from tests.support import Service, run

#: (level, vip) of the devices each test registers, by hwid suffix.
POPULATION = {i: (i % 6, i % 4 == 0) for i in range(40)}


@pytest.fixture
def svc(shared: Service) -> Service:
    return shared.fresh_account()


def populate(svc: Service, app: App, prefix: str) -> None:
    async def go() -> None:
        for i, (level, vip) in POPULATION.items():
            await svc.store.register_device(
                app,
                DeviceIn(
                    hwid=f"{prefix}-{i}",
                    device_type=1 if i % 2 else 3,
                    push_token=f"tok-{prefix}-{i}",
                    tags={"level": level, "vip": vip},
                ),
            )

    run(go())


def targeted_send(svc: Service, devices_filter: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("content", "hello")
    body = {"auth": svc.server_token, "devices_filter": devices_filter, **fields}
    out: dict[str, Any] = svc.call("createTargetedMessage", body).json()
    return out


def receivers(svc: Service, code: str) -> set[str]:
    return {
        str(r[0])
        for r in svc.db.rows(
            "SELECT d.hwid FROM deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE m.code = ?",
            (code,),
        )
    }


def app_of(svc: Service, code: str) -> str:
    (row,) = svc.db.rows(
        "SELECT a.code FROM messages m JOIN applications a ON a.id = m.app_id WHERE m.code = ?",
        (code,),
    )
    return str(row[0])


def test_one_application_filter_selects_exactly_its_devices(svc: Service) -> None:
    populate(svc, svc.app, "a")
    expr = f'(A("{svc.app.code}") * T("level", GTE, 3)) \\ T("vip", EQ, 1)'
    out = targeted_send(svc, expr, data={"k": 1})
    assert out["status_code"] == 200, out
    assert set(out["response"]) == {"Messages"}
    (code,) = out["response"]["Messages"]
    assert MESSAGE_CODE_RE.match(code)
    assert receivers(svc, code) == set()  # recorded at once, expanded by its job
    svc.expand()
    expected = {f"a-{i}" for i, (level, vip) in POPULATION.items() if level >= 3 and not vip}
    assert receivers(svc, code) == expected
    # tracked like any other message
    rows = svc.log(message_code=code)
    assert [r["action"] for r in rows] == ["created"] * len(expected)
    assert {r["hwid"] for r in rows} == expected

    # platforms in A(...) narrow too
    out = targeted_send(svc, f'A("{svc.app.code}", ["IOS"]) * T("vip", EQ, 1)')
    (code,) = out["response"]["Messages"]
    svc.expand()
    assert receivers(svc, code) == {f"a-{i}" for i, (_, vip) in POPULATION.items() if vip and i % 2}


def test_a_filter_naming_two_applications_makes_one_message_each(svc: Service) -> None:
    other = svc.new_app("second")
    populate(svc, svc.app, "a")
    populate(svc, other, "b")
    expr = f'(A("{svc.app.code}") + A("{other.code}")) * T("vip", EQ, 1)'
    out = targeted_send(svc, expr)
    assert out["status_code"] == 200, out
    first, second = out["response"]["Messages"]
    assert (app_of(svc, first), app_of(svc, second)) == (svc.app.code, other.code)
    svc.expand()
    vips = [i for i, (_, vip) in POPULATION.items() if vip]
    assert receivers(svc, first) == {f"a-{i}" for i in vips}
    assert receivers(svc, second) == {f"b-{i}" for i in vips}

    # AT scopes a condition to one application; A(X) holds only on X's devices
    expr = f'A("{svc.app.code}") + AT("{other.code}", "level", LTE, 1)'
    first, second = targeted_send(svc, expr)["response"]["Messages"]
    svc.expand()
    assert receivers(svc, first) == {f"a-{i}" for i in POPULATION}
    assert receivers(svc, second) == {
        f"b-{i}" for i, (level, _) in POPULATION.items() if level <= 1
    }


def test_refusals_name_the_problem_and_write_nothing(svc: Service) -> None:
    populate(svc, svc.app, "a")
    mine = svc.app.code
    stranger = svc.fresh_account()
    theirs = stranger.app.code
    cases: list[tuple[dict[str, Any], str]] = [
        ({"devices_filter": 'T("vip", EQ, 1)'}, "name an application with A("),
        ({"devices_filter": 'A("0000-00000")'}, "application 0000-00000 not found"),
        ({"devices_filter": f'A("{theirs}")'}, f"application {theirs} not found"),
        ({"devices_filter": f'A("{mine}") * T("vip" EQ 1)'}, "column"),
        ({"devices_filter": ""}, "devices_filter"),
        ({"devices_filter": f'A("{mine}") * T("nope", EQ, 1)'}, '"nope" is not defined'),
        ({"devices_filter": f'A("{mine}") * T("level", EQ, "high")'}, "level"),
        ({"devices_filter": 'G("GROUP")'}, "devices_filter"),
        ({"devices_filter": f'A("{mine}")', "devices": ["a-1"]}, '"devices"'),
        ({"devices_filter": f'A("{mine}")', "platforms": [1]}, '"platforms"'),
        ({"devices_filter": f'A("{mine}")', "users": ["u"]}, '"users"'),
        ({"devices_filter": f'A("{mine}")', "application": mine}, "application"),
        ({"devices_filter": f'A("{mine}")', "devicez": ["a-1"]}, "devicez"),
        ({"devices_filter": f'A("{mine}")', "content": ""}, "content"),
        ({"devices_filter": f'A("{mine}")', "send_date": "soon"}, "send_date"),
        ({}, "devices_filter"),
        ({"devices_filter": 5}, "devices_filter"),
    ]
    other = svc.new_app("other")
    only_other = svc.make_token("server", apps=[other.code])
    before = svc.db.counts()
    for fields, named in cases:
        body = {"content": "x", **fields}
        out = svc.call("createTargetedMessage", {"auth": svc.server_token, **body}).json()
        assert out["status_code"] == 210, (fields, out)
        assert named in out["status_message"], (fields, out)
    # a token restricted to other applications may not send to this one
    body = {"auth": only_other, "content": "x", "devices_filter": f'A("{mine}")'}
    assert svc.call("createTargetedMessage", body).json()["status_code"] == 403
    body["devices_filter"] = f'A("{other.code}") + A("{mine}")'
    assert svc.call("createTargetedMessage", body).json()["status_code"] == 403
    assert svc.db.counts() == before


def test_delete_stops_a_targeted_message(svc: Service) -> None:
    populate(svc, svc.app, "a")
    out = targeted_send(svc, f'A("{svc.app.code}")', send_date="2099-01-01 00:00")
    (code,) = out["response"]["Messages"]
    assert svc.server("deleteMessage", message=code)["status_code"] == 200
    svc.expand()
    assert receivers(svc, code) == set()
    (status,) = svc.db.rows("SELECT status FROM messages WHERE code = ?", (code,))[0]
    assert status == "cancelled"
