"""Selection in the store: every operator of every tag type, against a known device
population, selects exactly what a plain Python computation over that population says.

The population is made once per engine (module scope); each case is one query.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.tags import TagType
from pushtrack.domain.targeting import Node, from_conditions, parse_filter
from pushtrack.store import Store, open_store
from pushtrack.store.base import App, DeviceIn
from pushtrack.store.targeting import SelectionError, TagError
from tests.conftest import ENGINES, fresh_database_url, template_of
from tests.support import run

DAY = 86_400
CITIES = ["Paris", "Berlin", "Rome", "Oslo", "7"]
LIKES = ["a", "b", "c", "d"]
VERSIONS = ["1.2", "1.10", "1.9.5", "2.0", "10.0.1", "1.2.0"]
SCORES = [-0.75, 0, 1.5, 2.25, 10, 99.99]


@dataclass
class Device:
    hwid: str
    device_type: int
    tags: dict[str, Any]
    #: registerDevice's own fields, read by the built-in tags
    language: str | None = None
    os_version: str | None = None


@dataclass
class World:
    store: Store
    app: App
    other: App
    devices: list[Device]
    now: float


def _population(rng: random.Random, now: float) -> list[Device]:
    devices = []
    for i in range(90):
        tags: dict[str, Any] = {}
        if rng.random() < 0.85:
            tags["level"] = rng.randint(-3, 12)
        if rng.random() < 0.85:
            tags["city"] = rng.choice(CITIES)
        if rng.random() < 0.85:
            tags["likes"] = rng.sample(LIKES, rng.randint(0, 3))
        if rng.random() < 0.85:
            if rng.random() < 0.5:  # some days ago, away from day boundaries
                stamp = int(now) - rng.randint(0, 9) * DAY - rng.randint(1, 20) * 3600
                tags["born"] = stamp
            else:
                day, hour, minute = rng.randint(1, 6), rng.randint(0, 23), rng.choice([0, 30])
                tags["born"] = f"2024-03-{day:02d} {hour:02d}:{minute:02d}"
        if rng.random() < 0.85:
            tags["vip"] = rng.random() < 0.5
        if rng.random() < 0.85:
            tags["appver"] = rng.choice(VERSIONS)
        if rng.random() < 0.85:
            tags["score"] = rng.choice(SCORES)
        devices.append(Device(f"dev-{i:03d}", rng.choice([1, 3, 11]), tags))
    columns = random.Random(9)
    for d in devices:
        d.language = columns.choice(["en", "de", "fr", None])
        d.os_version = columns.choice(["14", "15.1", None])
    return devices


@pytest.fixture(scope="module", params=ENGINES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    path = Path(tmp_path_factory.mktemp("targeting"))
    urls = fresh_database_url(request.param, path, template_of(request))
    store = open_store(next(urls))
    try:
        app = run(store.create_app("acme", "main"))
        other = run(store.create_app("acme", "other"))
        run(store.targeting.add_tag(app, "level", TagType.INTEGER))
        run(store.targeting.add_tag(app, "born", TagType.DATE))
        run(store.targeting.add_tag(app, "appver", TagType.VERSION))
        run(store.targeting.add_tag(other, "born", TagType.DATE))
        now = time.time()
        devices = _population(random.Random(8), now)
        for d in devices:
            device = DeviceIn(
                hwid=d.hwid,
                device_type=d.device_type,
                language=d.language,
                os_version=d.os_version,
            )
            run(store.register_device(app, device))
            # The other application has the same hwids with every tag set: it must not leak in.
            run(store.register_device(other, DeviceIn(hwid=d.hwid, device_type=d.device_type)))
            assert run(store.targeting.set_tags(app, d.hwid, d.tags)) is True
            run(store.targeting.set_tags(other, d.hwid, {"level": 5, "city": "Paris"}))
        yield World(store, app, other, devices, now)
    finally:
        run(store.close())
        urls.close()


# -- the independent computation ----------------------------------------------------------


def _born(value: Any) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    return datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def _version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in str(text).split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def _truth(value: Any) -> bool:
    return value in (1, True) or (isinstance(value, str) and value.lower() == "true")


def _compare(kind: str, now: float) -> Callable[[Any, str, Any], bool]:
    """A predicate (stored value, operator, operand) -> bool for one tag type."""

    def scalar(v: Any, op: str, x: Any, key: Callable[[Any], Any]) -> bool:
        if op in ("EQ", "NOTEQ"):
            return (key(v) == key(x)) == (op == "EQ")
        if op in ("IN", "NOTIN"):
            return (key(v) in [key(i) for i in x]) == (op == "IN")
        if op == "GTE":
            return bool(key(v) >= key(x))
        if op == "LTE":
            return bool(key(v) <= key(x))
        lo, hi = sorted((key(x[0]), key(x[1])))
        return bool(lo <= key(v) <= hi)

    def date(v: Any, op: str, x: Any) -> bool:
        born = _born(v)
        sample = x[0] if isinstance(x, list) else x
        if isinstance(sample, int):  # days ago
            days = int((now - born.timestamp()) // DAY)
            return scalar(days, op, x, lambda n: n)
        if len(sample) == 10:  # a whole day
            return scalar(
                born.date(),
                op,
                x,
                lambda s: s if not isinstance(s, str) else datetime.strptime(s, "%Y-%m-%d").date(),
            )
        return scalar(
            born.replace(second=0),
            op,
            x,
            lambda s: (
                s
                if not isinstance(s, str)
                else datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            ),
        )

    def likes(v: Any, op: str, x: Any) -> bool:
        if op == "EQ":
            wanted = x if isinstance(x, list) else [x]
            return all(str(w) in v for w in wanted)
        hit = any(str(w) in v for w in x)
        return hit if op == "IN" else not hit

    table: dict[str, Callable[[Any, str, Any], bool]] = {
        "level": lambda v, op, x: scalar(v, op, x, lambda n: n),
        "city": lambda v, op, x: scalar(v, op, x, str),
        "likes": likes,
        "born": date,
        "vip": lambda v, op, x: v == _truth(x),
        "appver": lambda v, op, x: scalar(v, op, x, _version),
        "score": lambda v, op, x: scalar(v, op, x, lambda n: Decimal(str(n))),
    }
    return table[kind]


def expected(world: World, tag: str, op: str, operand: Any = None) -> list[str]:
    compare = _compare(tag, world.now)
    chosen = []
    for d in world.devices:
        value = d.tags.get(tag)
        has = value is not None and value != []
        if op == "ANY":
            hit = has
        elif op == "NOTSET":
            hit = not has
        else:
            hit = has and compare(value, op, operand)
        if hit:
            chosen.append(d.hwid)
    return sorted(chosen)


def selected(world: World, node: Node) -> list[str]:
    store, app = world.store, world.app
    hwids: list[str] = run(store.targeting.select_hwids(app, node))
    assert run(store.targeting.count(app, node)) == len(hwids)
    # The batched walk (what an expansion does) finds the same devices.
    ids: list[int] = []
    while True:
        page = run(store.targeting.select_ids(app, node, ids[-1] if ids else 0, 7))
        if not page:
            break
        assert page == sorted(page)
        assert not ids or page[0] > ids[-1]
        ids.extend(page)
    assert len(ids) == len(hwids)
    return hwids


# -- every operator of every type ----------------------------------------------------------

CASES: list[tuple[str, str, Any]] = [
    # integer: all seven
    ("level", "EQ", 4),
    ("level", "NOTEQ", 4),
    ("level", "IN", [1, 2, -3]),
    ("level", "NOTIN", [1, 2, -3]),
    ("level", "GTE", 5),
    ("level", "LTE", 0),
    ("level", "BETWEEN", [2, 6]),
    ("level", "BETWEEN", [6, 2]),
    # string
    ("city", "EQ", "Paris"),
    ("city", "NOTEQ", "Paris"),
    ("city", "IN", ["Rome", "Oslo"]),
    ("city", "NOTIN", ["Rome", "Oslo"]),
    ("city", "EQ", 7),
    # list
    ("likes", "EQ", "a"),
    ("likes", "EQ", ["a", "b"]),
    ("likes", "IN", ["b", "d"]),
    ("likes", "NOTIN", ["b", "d"]),
    # date: days ago
    ("born", "EQ", 3),
    ("born", "NOTEQ", 3),
    ("born", "GTE", 4),
    ("born", "LTE", 2),
    ("born", "BETWEEN", [1, 3]),
    ("born", "IN", [0, 5]),
    ("born", "NOTIN", [0, 5]),
    # date: dates as precise as written
    ("born", "EQ", "2024-03-03"),
    ("born", "NOTEQ", "2024-03-03"),
    ("born", "GTE", "2024-03-04"),
    ("born", "LTE", "2024-03-02"),
    ("born", "BETWEEN", ["2024-03-02", "2024-03-04"]),
    ("born", "IN", ["2024-03-01", "2024-03-06"]),
    ("born", "NOTIN", ["2024-03-01", "2024-03-06"]),
    ("born", "EQ", "2024-03-03 22:30"),
    ("born", "NOTIN", ["2024-03-03 22:30", "2024-03-04 20:30"]),
    ("born", "GTE", "2024-03-05 12:00"),
    # boolean: EQ only, every accepted operand
    ("vip", "EQ", 1),
    ("vip", "EQ", 0),
    ("vip", "EQ", True),
    ("vip", "EQ", False),
    ("vip", "EQ", "true"),
    ("vip", "EQ", "false"),
    # version
    ("appver", "EQ", "1.2"),
    ("appver", "NOTEQ", "1.2.0"),
    ("appver", "IN", ["1.10", "2"]),
    ("appver", "NOTIN", ["1.10", "2"]),
    ("appver", "GTE", "1.9"),
    ("appver", "LTE", "1.9.5"),
    ("appver", "BETWEEN", ["1.3", "2.0"]),
    # decimal
    ("score", "EQ", 1.5),
    ("score", "NOTEQ", 0),
    ("score", "IN", [2.25, 10]),
    ("score", "NOTIN", [2.25, 10]),
    ("score", "GTE", 2.25),
    ("score", "LTE", 1.5),
    ("score", "BETWEEN", [-1, 2]),
] + [
    (tag, op, None)
    for tag in ("level", "city", "likes", "born", "vip", "appver", "score")
    for op in ("NOTSET", "ANY")
]


@pytest.mark.parametrize(("tag", "op", "operand"), CASES, ids=[f"{t}-{o}-{v}" for t, o, v in CASES])
def test_each_condition_selects_exactly_the_matching_devices(
    world: World, tag: str, op: str, operand: Any
) -> None:
    condition = [tag, op] if operand is None else [tag, op, operand]
    node = from_conditions([condition])
    run(world.store.targeting.check([world.app], node))
    want = expected(world, tag, op, operand)
    assert selected(world, node) == want
    assert 0 < len(want) < len(world.devices) or op in ("NOTSET",), "a case that tells nothing"


def test_conditions_combine_with_and_and_or(world: World) -> None:
    conditions = [["level", "GTE", 3], ["city", "IN", ["Paris", "Rome"]], ["vip", "EQ", 1]]
    parts = [expected(world, *c) for c in conditions]
    both = sorted(set(parts[0]) & set(parts[1]) & set(parts[2]))
    either = sorted(set(parts[0]) | set(parts[1]) | set(parts[2]))
    assert selected(world, from_conditions(conditions)) == both
    assert selected(world, from_conditions(conditions, "OR")) == either
    assert both
    assert either != both


def test_filter_language_set_operations_and_applications(world: World) -> None:
    code, other = world.app.code, world.other.code
    everyone = sorted(d.hwid for d in world.devices)
    ios = sorted(d.hwid for d in world.devices if d.device_type == 1)
    high = expected(world, "level", "GTE", 5)
    paris = expected(world, "city", "EQ", "Paris")
    cases: dict[str, list[str]] = {
        f'A("{code}")': everyone,
        f'A("{code}", ["iOS"])': ios,
        f'A("{code}", ["IOS", "ANDROID", "CHROME"])': everyone,
        f'A("{other}")': [],
        f'(A("{code}", ["IOS"]) * T("level", GTE, 5))': sorted(set(ios) & set(high)),
        '(T("level", GTE, 5) + T("city", EQ, "Paris"))': sorted(set(high) | set(paris)),
        f'(A("{code}") \\ T("level", GTE, 5))': sorted(set(everyone) - set(high)),
        '(T("level", GTE, 5) \\ T("city", EQ, "Paris"))': sorted(set(high) - set(paris)),
        f'AT("{code}", "level", GTE, 5)': high,
        f'AT("{other}", "level", GTE, 5)': [],  # names the other application: not these devices
        f'(A("{code}") \\ AT("{other}", "level", GTE, 5))': everyone,
        'T("never-defined", NOTSET)': everyone,
        'T("never-defined", EQ, 1)': [],
        f'(A("{code}") \\ T("never-defined", ANY))': everyone,
    }
    for text, want in cases.items():
        assert selected(world, parse_filter(text)) == want, text


def test_a_saved_filter_selects_what_its_expression_selects(world: World) -> None:
    conditions = [["level", "BETWEEN", [0, 8]], ["likes", "IN", ["a"]], ["born", "LTE", 6]]
    saved = run(
        world.store.targeting.create_filter(
            world.app.account, "engaged", from_conditions(conditions), conditions=conditions
        )
    )
    again = run(world.store.targeting.get_filter(world.app.account, "engaged"))
    assert again == saved
    from_text = selected(world, parse_filter(saved.expression))
    assert (
        from_text
        == selected(world, saved.selection)
        == selected(world, from_conditions(conditions))
    )
    assert from_text  # the case selects someone
    assert saved.conditions == conditions
    with pytest.raises(TagError, match='a filter named "engaged" already exists'):
        run(world.store.targeting.create_filter(world.app.account, "engaged", saved.selection))
    assert run(world.store.targeting.delete_filter(world.app.account, "engaged")) is True
    assert run(world.store.targeting.get_filter(world.app.account, "engaged")) is None


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ([["level", "EQ", 1], ["nope", "EQ", 1]], 'conditions[1]: tag "nope" is not defined'),
        (
            [["city", "GTE", "a"]],
            'conditions[0]: operator GTE is not allowed for string tag "city"',
        ),
        (
            [["likes", "NOTEQ", "a"]],
            'conditions[0]: operator NOTEQ is not allowed for list tag "likes"',
        ),
        ([["vip", "IN", [1]]], 'conditions[0]: operator IN is not allowed for boolean tag "vip"'),
        ([["vip", "EQ", 2]], 'conditions[0]: tag "vip": a boolean is compared with 0, 1'),
        ([["level", "EQ", "x"]], 'conditions[0]: tag "level": expected an integer'),
        ([["level", "IN", 3]], 'conditions[0]: tag "level": IN needs a non-empty list'),
        ([["level", "BETWEEN", [1]]], 'conditions[0]: tag "level": BETWEEN needs a list of two'),
        ([["level", "EQ", [1, 2]]], 'conditions[0]: tag "level": EQ needs a single value'),
        ([["born", "EQ", "yesterday"]], 'conditions[0]: tag "born": expected a date'),
        ([["appver", "GTE", "1.x"]], "conditions[0]: tag \"appver\": '1.x' is not a version"),
        ([["score", "GTE", "high"]], 'conditions[0]: tag "score": expected a number'),
    ],
)
def test_conditions_that_do_not_fit_the_tags_are_refused_by_name(
    world: World, conditions: list[Any], message: str
) -> None:
    with pytest.raises(SelectionError) as err:
        run(world.store.targeting.check([world.app], from_conditions(conditions)))
    assert err.value.message.startswith(message), err.value.message


def test_a_filter_is_checked_against_the_applications_it_names(world: World) -> None:
    check = world.store.targeting.check
    node = parse_filter(f'AT("{world.other.code}", "likes", EQ, "a")')
    with pytest.raises(SelectionError) as err:
        run(check([world.app, world.other], node, field="devices_filter", indexed=False))
    assert err.value.message == (
        f'devices_filter: AT("{world.other.code}", "likes", EQ, "a"): tag "likes" is not defined'
    )
    # T(...) needs the tag in one of the applications; it fits wherever it is defined.
    run(check([world.app, world.other], parse_filter('T("likes", IN, ["a"])'), indexed=False))
    with pytest.raises(SelectionError, match="application X is not targeted"):
        run(check([world.app], parse_filter('AT("X", "level", EQ, 1)'), indexed=False))


BUILTIN_CASES: list[tuple[str, str, Any, Callable[[Device], bool]]] = [
    ("Language", "EQ", "EN", lambda d: d.language == "en"),
    ("Language", "IN", ["de", "fr"], lambda d: d.language in ("de", "fr")),
    ("Language", "NOTEQ", "en", lambda d: d.language not in (None, "en")),
    ("Language", "NOTIN", ["de", "fr"], lambda d: d.language == "en"),
    ("Language", "NOTSET", None, lambda d: d.language is None),
    ("OS Version", "EQ", "15.1", lambda d: d.os_version == "15.1"),
    ("OS Version", "ANY", None, lambda d: d.os_version is not None),
    ("Device Model", "NOTSET", None, lambda d: True),
]


@pytest.mark.parametrize(
    ("tag", "op", "operand", "oracle"), BUILTIN_CASES, ids=[f"{c[0]}-{c[1]}" for c in BUILTIN_CASES]
)
def test_built_in_tags_read_the_devices_own_fields(
    world: World, tag: str, op: str, operand: Any, oracle: Callable[[Device], bool]
) -> None:
    condition = [tag, op] if operand is None else [tag, op, operand]
    node = from_conditions([condition])
    run(world.store.targeting.check([world.app], node))
    assert selected(world, node) == sorted(d.hwid for d in world.devices if oracle(d))


def test_built_in_tags_take_string_operators_only_and_cannot_be_set(world: World) -> None:
    with pytest.raises(SelectionError, match='operator GTE is not allowed for string tag "OS'):
        run(world.store.targeting.check([world.app], from_conditions([["OS Version", "GTE", "1"]])))
    with pytest.raises(TagError, match='tag "Language" is built in'):
        run(world.store.targeting.set_tags(world.app, "dev-000", {"Language": "en"}))
