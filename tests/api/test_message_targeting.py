"""createMessage targeting over HTTP: conditions, saved filters, and every given field narrowing.

Each case sends to a known population and compares who got a delivery with a plain
Python computation over the same population.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pushtrack import config
from pushtrack.jobs import expansion
from pushtrack.jobs.runner import Worker
from tests.support import Service, run

#: hwid -> (device type, level, city, vip, user)
POPULATION: dict[str, tuple[int, int, str, bool, str]] = {
    f"dev-{i}": (
        1 if i % 3 == 0 else 3,
        i,
        ("Berlin", "Paris", "Rome")[i % 3],
        i % 2 == 0,
        f"u{i % 4}",
    )
    for i in range(1, 25)
}
Row = tuple[int, int, str, bool, str]


@pytest.fixture
def svc(shared: Service) -> Service:
    view = shared.fresh_account()
    for hwid, (kind, level, city, vip, user) in POPULATION.items():
        view.register(hwid, kind, userId=user, tags={"level": level, "city": city, "vip": vip})
    return view


def expand(svc: Service) -> None:
    """Run the expansion jobs until the audience messages are expanded (nothing is sent)."""
    settings = config.load({"database": svc.store.url}, env={})
    worker = Worker(svc.store, {expansion.KIND: expansion.handler(settings, svc.store)})
    run(worker.run_until_idle(60))


def receivers(svc: Service, code: str) -> set[str]:
    """The devices the message will send to: its deliveries waiting for the dispatcher."""
    rows = svc.db.rows(
        "SELECT d.hwid FROM deliveries d JOIN messages m ON m.id = d.message_id"
        " WHERE m.code = ? AND d.state = 1",  # 1: created, due to be sent
        (code,),
    )
    return {r[0] for r in rows}


def expected(keep: Callable[[Row], bool]) -> set[str]:
    return {hwid for hwid, row in POPULATION.items() if keep(row)}


def send(svc: Service, **notification: Any) -> dict[str, Any]:
    notification.setdefault("content", "hi")
    out = svc.server("createMessage", notifications=[notification])
    assert out["status_code"] == 200, out
    return out["response"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("conditions", "operator", "keep"),
    [
        ([["level", "GTE", 20]], None, lambda r: r[1] >= 20),
        ([["city", "IN", ["Paris", "Rome"]], ["vip", "EQ", True]], None,
         lambda r: r[2] in ("Paris", "Rome") and r[3]),
        ([["city", "EQ", "Rome"], ["level", "LTE", 3]], "OR",
         lambda r: r[2] == "Rome" or r[1] <= 3),
        ([["level", "BETWEEN", [5, 8]]], "AND", lambda r: 5 <= r[1] <= 8),
    ],
)  # fmt: skip
def test_conditions_select_exactly_the_matching_devices(
    svc: Service,
    conditions: list[Any],
    operator: str | None,
    keep: Callable[[Row], bool],
) -> None:
    extra = {"conditions_operator": operator} if operator else {}
    (code,) = send(svc, conditions=conditions, **extra)["Messages"]
    expand(svc)
    assert receivers(svc, code) == expected(keep)


def test_every_given_targeting_narrows(svc: Service) -> None:
    out = svc.server("createFilter", name="paris", conditions=[["city", "EQ", "Paris"]])
    assert out["status_code"] == 200, out
    (code,) = send(
        svc,
        platforms=[3],
        users=["u1", "u2", "u3"],
        conditions=[["level", "GTE", 4]],
        filter="paris",
    )["Messages"]
    expand(svc)
    assert receivers(svc, code) == expected(
        lambda r: r[0] == 3 and r[4] in ("u1", "u2", "u3") and r[1] >= 4 and r[2] == "Paris"
    )


def test_explicit_devices_are_narrowed_too_and_say_why(svc: Service) -> None:
    named = ["dev-1", "dev-2", "dev-3", "dev-4", "nobody"]
    out = send(svc, devices=named, conditions=[["vip", "EQ", True]], platforms=[3])
    (code,) = out["Messages"]
    assert len(out["TrackingCodes"]) == len(named)
    keep = expected(lambda r: r[3] and r[0] == 3) & set(named)
    assert keep == {"dev-2", "dev-4"}
    assert receivers(svc, code) == keep
    trail = {
        row[0]: row[1]
        for row in svc.db.rows(
            "SELECT d.hwid, e.description FROM deliveries d JOIN messages m ON m.id = d.message_id"
            " JOIN events e ON e.delivery_id = d.id WHERE m.code = ? AND e.status = 4",
            (code,),
        )
    }
    assert trail == {
        "dev-1": "Not in the audience",
        "dev-3": "Not in the audience",
        "nobody": "Unknown device",
    }


@pytest.mark.parametrize(
    ("notification", "says"),
    [
        ({"conditions": [["nope", "EQ", 1]]},
         'notifications[0].conditions[0]: tag "nope" is not defined'),
        ({"conditions": [["city", "GTE", "A"]]}, "notifications[0].conditions[0]: operator GTE"),
        ({"conditions": [["level", "LIKE", 1]]}, "notifications[0].conditions[0]"),
        ({"conditions": []}, "notifications[0].conditions: must hold at least one condition"),
        ({"conditions_operator": "OR"},
         "notifications[0].conditions_operator: goes with conditions"),
        ({"filter": "no-such-filter"}, 'notifications[0].filter: no filter named "no-such-filter"'),
        ({"devices_filter": 'A("X")'}, 'notifications[0]: "devices_filter" is not supported'),
    ],
)  # fmt: skip
def test_targeting_errors_name_the_field_and_send_nothing(
    svc: Service, notification: dict[str, Any], says: str
) -> None:
    before = svc.db.counts()
    out = svc.server("createMessage", notifications=[{"content": "hi", **notification}])
    assert out["status_code"] == 210, out
    assert out["status_message"].startswith(says), out
    assert svc.db.counts() == before
