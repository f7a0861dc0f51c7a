"""Tags and saved filters over HTTP: setTags/getTags round trips per type, list
append/remove, null removal, refusals naming the tag; addTag/listTags/deleteTag;
createFilter/listFilters/deleteFilter."""

from __future__ import annotations

from typing import Any

import pytest

from pushtrack.domain.targeting import parse_filter
from tests.support import Service, run

#: The methods of this area: (name, request type, handler, server method?).


@pytest.fixture
def svc(shared: Service) -> Service:
    view = shared.fresh_account()
    view.register("hw-1", 3)
    return view


def ok(out: dict[str, Any]) -> Any:
    assert out["status_code"] == 200, out
    return out["response"]


def refused(out: dict[str, Any]) -> str:
    assert out["status_code"] == 210, out
    return str(out["status_message"])


def get_tags(svc: Service, hwid: str = "hw-1") -> dict[str, Any]:
    result: dict[str, Any] = ok(svc.device("getTags", hwid=hwid))["result"]
    return result


def set_tags(svc: Service, hwid: str = "hw-1", **values: Any) -> dict[str, Any]:
    return svc.device("setTags", hwid=hwid, tags=values)


def account_call(svc: Service, method: str, **fields: Any) -> dict[str, Any]:
    """A server call naming no application."""
    out: dict[str, Any] = svc.call(method, {"auth": svc.server_token, **fields}).json()
    return out


# -- setTags / getTags ----------------------------------------------------------------------


def test_each_inferred_type_round_trips(svc: Service) -> None:
    out = set_tags(svc, level=7, city="Paris", vip=True, likes=["a", "b"], score=19.95)
    assert ok(out) == {"skipped": []}
    assert get_tags(svc) == {
        "level": 7,
        "city": "Paris",
        "vip": True,
        "likes": ["a", "b"],
        "score": 19.95,
    }
    listed = {t["name"]: t for t in ok(svc.server("listTags"))["tags"]}
    assert {n: (t["type"], t["type_name"], t["declared"]) for n, t in listed.items()} == {
        "level": (1, "integer", False),
        "city": (2, "string", False),
        "likes": (3, "list", False),
        "vip": (5, "boolean", False),
        "score": (6, "decimal", False),
    }


def test_declared_dates_and_versions_round_trip(svc: Service) -> None:
    assert ok(svc.server("addTag", tag={"name": "born", "type": 4})) == {"result": True}
    assert ok(svc.server("addTag", tag={"name": "ver", "type": "version"})) == {"result": True}
    ok(set_tags(svc, born="2024-05-01 10:30", ver="1.10.2"))
    assert get_tags(svc) == {"born": "2024-05-01 10:30:00", "ver": "1.10.2"}
    ok(set_tags(svc, born=1714559400))  # a UNIX timestamp
    assert get_tags(svc)["born"] == "2024-05-01 10:30:00"
    ok(set_tags(svc, born="2024-05-02"))
    assert get_tags(svc)["born"] == "2024-05-02 00:00:00"


def test_booleans_accept_pushwoosh_spellings(svc: Service) -> None:
    ok(svc.server("addTag", tag={"name": "vip", "type": 5}))
    for value, expected in [(1, True), (0, False), ("true", True), ("FALSE", False)]:
        ok(set_tags(svc, vip=value))
        assert get_tags(svc) == {"vip": expected}


def test_list_append_remove_and_replace(svc: Service) -> None:
    ok(set_tags(svc, likes=["a", "b"]))
    ok(set_tags(svc, likes={"operation": "append", "value": ["c", "a"]}))
    assert get_tags(svc)["likes"] == ["a", "b", "c"]
    ok(set_tags(svc, likes={"operation": "remove", "value": ["a", "zz"]}))
    assert get_tags(svc)["likes"] == ["b", "c"]
    ok(set_tags(svc, likes={"operation": "append", "value": ["d"]}))
    assert get_tags(svc)["likes"] == ["b", "c", "d"]
    ok(set_tags(svc, likes=["x"]))
    assert get_tags(svc)["likes"] == ["x"]
    # An append to a tag nobody defined makes it a list.
    ok(set_tags(svc, fresh={"operation": "append", "value": ["q"]}))
    assert get_tags(svc)["fresh"] == ["q"]


def test_null_removes_a_tag_and_others_stay(svc: Service) -> None:
    ok(set_tags(svc, level=3, city="Rome"))
    ok(set_tags(svc, level=None, never_set=None))
    assert get_tags(svc) == {"city": "Rome"}
    ok(set_tags(svc, level=4))  # the tag keeps its type: a value can come back
    assert get_tags(svc) == {"city": "Rome", "level": 4}


def test_tags_are_per_device_and_application(svc: Service) -> None:
    svc.register("hw-2", 1)
    other = svc.new_app("second")
    ok(svc.device("registerDevice", application=other.code, hwid="hw-1", device_type=3))
    ok(set_tags(svc, level=1))
    ok(set_tags(svc, "hw-2", level=2))
    ok(svc.device("setTags", application=other.code, hwid="hw-1", tags={"level": "text"}))
    assert get_tags(svc) == {"level": 1}
    assert get_tags(svc, "hw-2") == {"level": 2}
    theirs = ok(svc.device("getTags", application=other.code, hwid="hw-1"))["result"]
    assert theirs == {"level": "text"}  # another application, another tag of that name


@pytest.mark.parametrize(
    ("declared", "values", "message"),
    [
        (None, {"level": 1, "later": 2}, None),
        ({"level": 1}, {"level": "seven"}, 'tags: tag "level": expected an integer'),
        ({"level": 1}, {"level": 1.5}, 'tags: tag "level": expected an integer'),
        ({"level": 1}, {"level": True}, 'tags: tag "level": expected an integer'),
        ({"city": 2}, {"city": 5}, 'tags: tag "city": expected a string'),
        ({"likes": 3}, {"likes": "a"}, 'tags: tag "likes": expected a list of strings'),
        ({"likes": 3}, {"likes": [1]}, 'tags: tag "likes": list elements must be strings'),
        (
            {"likes": 3},
            {"likes": {"operation": "merge", "value": ["a"]}},
            'tags: tag "likes": operation must be "append" or "remove"',
        ),
        ({"born": 4}, {"born": "soon"}, 'tags: tag "born": expected a date'),
        ({"vip": 5}, {"vip": 2}, 'tags: tag "vip": expected true or false'),
        ({"ver": 7}, {"ver": "1.2.beta"}, "tags: tag \"ver\": '1.2.beta' is not a version"),
        ({"score": 6}, {"score": "high"}, 'tags: tag "score": expected a number'),
        (None, {"odd": {"x": 1}}, 'tags: tag "odd": a value must be a string, number'),
    ],
)
def test_a_value_that_does_not_fit_is_refused_naming_the_tag_and_nothing_is_written(
    svc: Service, declared: dict[str, int] | None, values: dict[str, Any], message: str | None
) -> None:
    for name, kind in (declared or {}).items():
        ok(svc.server("addTag", tag={"name": name, "type": kind}))
    if message is None:
        ok(set_tags(svc, **values))
        return
    before = get_tags(svc)
    out = svc.device("setTags", hwid="hw-1", tags={"first": 1, **values})
    assert refused(out).startswith(message), out
    assert get_tags(svc) == before  # not even "first"


def test_unknown_devices_and_fields_are_refused(svc: Service) -> None:
    assert refused(set_tags(svc, "nobody", level=1)) == "hwid: device nobody is not registered"
    assert refused(svc.device("getTags", hwid="nobody")) == (
        "hwid: device nobody is not registered"
    )
    out = svc.device("setTags", hwid="hw-1", tags={"a": 1}, tagz={"b": 2})
    assert refused(out) == 'unknown field "tagz"'
    assert get_tags(svc) == {}


def test_register_device_tags_go_through_the_same_types(svc: Service) -> None:
    ok(svc.server("addTag", tag={"name": "born", "type": 4}))
    svc.register("hw-3", 1, tags={"level": 5, "born": "2024-01-02 03:04"})
    assert get_tags(svc, "hw-3") == {"level": 5, "born": "2024-01-02 03:04:00"}
    out = svc.device("registerDevice", hwid="hw-4", device_type=1, tags={"born": "never"})
    assert refused(out).startswith('tags: tag "born": expected a date')
    assert refused(svc.device("getTags", hwid="hw-4")) == "hwid: device hw-4 is not registered"


# -- tag definitions -----------------------------------------------------------------------


def test_add_list_and_delete_tags(svc: Service) -> None:
    ok(svc.server("addTag", tag={"name": "level", "type": 1}))
    ok(svc.server("addTag", tag={"name": "level", "type": 1}))  # again: nothing changes
    out = svc.server("addTag", tag={"name": "level", "type": 2})
    assert refused(out) == 'tag: tag "level" already exists as integer'
    out = svc.server("addTag", tag={"name": "x", "type": 9})
    assert refused(out).startswith("tag.type: must be 1 (integer)")
    out = svc.server("addTag", tag={"name": "x", "type": 1, "application_specific": False})
    assert refused(out).startswith('"application_specific" is not supported')
    out = svc.server("addTag", tag={"name": "x", "type": 1, "user_specific": True})
    assert refused(out).startswith('"user_specific" is not supported')
    ok(set_tags(svc, level=3, city="Oslo"))
    names = [t["name"] for t in ok(svc.server("listTags"))["tags"]]
    assert names == ["city", "level"]
    assert ok(svc.server("deleteTag", tag={"name": "level"})) == {"result": True}
    assert get_tags(svc) == {"city": "Oslo"}
    out = svc.server("deleteTag", tag={"name": "level"})
    assert refused(out) == f'tag: no tag "level" in application {svc.app.code}'
    # A deleted tag can be declared anew with another type.
    ok(svc.server("addTag", tag={"name": "level", "type": 2}))
    ok(set_tags(svc, level="high"))
    assert get_tags(svc) == {"city": "Oslo", "level": "high"}


def test_tag_methods_need_a_server_token_of_the_account(svc: Service, shared: Service) -> None:
    stranger = shared.fresh_account()
    body = {
        "auth": stranger.server_token,
        "application": svc.app.code,
        "tag": {"name": "x", "type": 1},
    }
    out = svc.call("addTag", body).json()
    assert out["status_code"] == 210
    assert out["status_message"] == f"application: {svc.app.code} not found"
    out = svc.call("listTags", {"application": svc.app.code}).json()
    assert out["status_code"] == 401


# -- saved filters -------------------------------------------------------------------------


def test_create_list_and_delete_filters(svc: Service) -> None:
    ok(set_tags(svc, level=3, city="Oslo"))
    out = svc.server(
        "createFilter",
        name="locals",
        conditions=[["city", "EQ", "Oslo"], ["level", "GTE", 2]],
        operator="or",
    )
    assert ok(out) == {
        "name": "locals",
        "expression": '(T("city", EQ, "Oslo") + T("level", GTE, 2))',
    }
    expression = f'A("{svc.app.code}", ["android"]) * T("city", IN, ["Oslo"])'
    ok(account_call(svc, "createFilter", name="app-locals", filter_expression=expression))
    listed = ok(account_call(svc, "listFilters"))["filters"]
    assert listed == [
        {
            "name": "app-locals",
            "expression": f'(A("{svc.app.code}", ["ANDROID"]) * T("city", IN, ["Oslo"]))',
            "conditions": None,
            "operator": None,
            "application": None,
        },
        {
            "name": "locals",
            "expression": '(T("city", EQ, "Oslo") + T("level", GTE, 2))',
            "conditions": [["city", "EQ", "Oslo"], ["level", "GTE", 2]],
            "operator": "OR",
            "application": svc.app.code,
        },
    ]
    # The saved form selects what was asked for.
    svc.register("hw-2", 1)
    ok(set_tags(svc, "hw-2", city="Oslo"))
    svc.register("hw-3", 3)
    ok(set_tags(svc, "hw-3", city="Rome", level=1))
    selections = {
        item["name"]: run(
            svc.store.targeting.select_hwids(svc.app, parse_filter(item["expression"]))
        )
        for item in listed
    }
    assert selections == {"app-locals": ["hw-1"], "locals": ["hw-1", "hw-2"]}
    out = account_call(svc, "createFilter", name="locals", conditions=[["level", "EQ", 1]])
    assert refused(out) == 'name: a filter named "locals" already exists'
    assert ok(account_call(svc, "deleteFilter", name="locals")) is None
    out = account_call(svc, "deleteFilter", name="locals")
    assert refused(out) == 'name: no filter named "locals"'
    assert [f["name"] for f in ok(account_call(svc, "listFilters"))["filters"]] == ["app-locals"]


def test_filters_are_checked_when_created(svc: Service) -> None:
    ok(set_tags(svc, level=3, city="Oslo"))
    cases = [
        (
            {"conditions": [["level", "EQ", 1], ["nope", "EQ", 1]]},
            'conditions[1]: tag "nope" is not defined',
        ),
        (
            {"conditions": [["city", "GTE", "a"]]},
            'conditions[0]: operator GTE is not allowed for string tag "city"',
        ),
        ({"conditions": [["city", "EQ", "a"]], "operator": "XOR"}, "operator: must be AND or OR"),
        (
            {"filter_expression": '(A("X") * T("level", GTE, 5)'},
            "filter_expression: syntax error at column 29: unexpected end of input",
        ),
        ({"filter_expression": 'A("NOPE-1")'}, "filter_expression: application NOPE-1 not found"),
        (
            {"filter_expression": 'T("level", BETWEEN, [1])'},
            'filter_expression: T("level", BETWEEN, [1]): tag "level": BETWEEN needs a list of two',
        ),
        ({}, "conditions: required (or filter_expression)"),
        (
            {"conditions": [["level", "EQ", 1]], "filter_expression": 'T("level", EQ, 1)'},
            "filter_expression: give conditions or filter_expression, not both",
        ),
    ]
    for fields, message in cases:
        out = account_call(svc, "createFilter", name="f", **fields)
        assert refused(out).startswith(message), (fields, out)
    assert ok(account_call(svc, "listFilters"))["filters"] == []


def test_a_filter_tied_to_an_application_checks_its_tags(svc: Service) -> None:
    other = svc.new_app("second")
    ok(set_tags(svc, level=3))
    out = svc.server(
        "createFilter", name="f", conditions=[["level", "EQ", 3]], application=other.code
    )
    assert refused(out) == 'conditions[0]: tag "level" is not defined'
    out = svc.server(
        "createFilter", name="f", conditions=[["level", "EQ", 3]], application=svc.app.code
    )
    ok(out)
    assert ok(svc.server("listFilters"))["filters"][0]["application"] == svc.app.code
