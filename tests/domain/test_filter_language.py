"""Pushwoosh's filter language: what its own Python client renders parses; errors point
at the right column; render and parse are inverse; conditions become trees."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypushwoosh import constants
from pypushwoosh import filter as pwf

from pushtrack.domain.targeting import (
    Application,
    Difference,
    FilterSyntaxError,
    Intersection,
    Node,
    TagCondition,
    TargetingError,
    Union,
    applications,
    decode_node,
    encode_node,
    from_conditions,
    parse_filter,
    render,
)

# -- everything Pushwoosh's client renders parses -----------------------------------------


def _client_filters() -> list[tuple[Any, Node]]:
    """(filter object of the pypushwoosh client, the tree it means)."""
    ios, android = constants.PLATFORM_IOS, constants.PLATFORM_ANDROID
    cases: list[tuple[Any, Node]] = [
        (pwf.ApplicationFilter("ABC-12"), Application(code="ABC-12")),
        (
            pwf.ApplicationFilter("ABC-12", [ios, android]),
            Application(code="ABC-12", platforms=(1, 3)),
        ),
        (pwf.IntegerTagFilter("level", "GTE", 5), TagCondition(tag="level", op="GTE", operand=5)),
        (
            pwf.IntegerTagFilter("level", "BETWEEN", [-3, 7]),
            TagCondition(tag="level", op="BETWEEN", operand=(-3, 7)),
        ),
        (
            pwf.IntegerTagFilter("level", "NOTIN", [1, 2]),
            TagCondition(tag="level", op="NOTIN", operand=(1, 2)),
        ),
        (
            pwf.StringTagFilter("city", "IN", ["Paris", "Rome", 7]),
            TagCondition(tag="city", op="IN", operand=("Paris", "Rome", 7)),
        ),
        (
            pwf.StringTagFilter("city", "NOTEQ", "Oslo"),
            TagCondition(tag="city", op="NOTEQ", operand="Oslo"),
        ),
        (pwf.ListTagFilter("likes", "EQ", "a"), TagCondition(tag="likes", op="EQ", operand="a")),
        (
            pwf.DateTagFilter("born", "GTE", "2024-01-02"),
            TagCondition(tag="born", op="GTE", operand="2024-01-02"),
        ),
        (
            pwf.DateTagFilter("born", "BETWEEN", ["2024-01-02 10:00", "2024-02-01"]),
            TagCondition(tag="born", op="BETWEEN", operand=("2024-01-02 10:00", "2024-02-01")),
        ),
        (pwf.DaysTagFilter("seen", "LTE", 7), TagCondition(tag="seen", op="LTE", operand=7)),
        (pwf.BooleanTagFilter("vip", "EQ", 1), TagCondition(tag="vip", op="EQ", operand=1)),
        (
            pwf.BooleanTagFilter("vip", "EQ", "false"),
            TagCondition(tag="vip", op="EQ", operand="false"),
        ),
        (
            pwf.IntegerTagFilterByApplication("level", "EQ", 3, "ABC-12"),
            TagCondition(tag="level", op="EQ", operand=3, app="ABC-12"),
        ),
        (
            pwf.ApplicationFilter("ABC-12")
            .intersect(pwf.BooleanTagFilter("vip", "EQ", 1))
            .subtract(pwf.IntegerTagFilter("level", "GTE", 5)),
            Difference(
                left=Intersection(
                    items=(
                        Application(code="ABC-12"),
                        TagCondition(tag="vip", op="EQ", operand=1),
                    )
                ),
                right=TagCondition(tag="level", op="GTE", operand=5),
            ),
        ),
        (
            pwf.ApplicationFilter("A1")
            .union(pwf.ApplicationFilter("A2"))
            .union(pwf.ApplicationFilter("A3")),
            Union(items=(Application(code="A1"), Application(code="A2"), Application(code="A3"))),
        ),
    ]
    return cases


@pytest.mark.parametrize(("client_filter", "expected"), _client_filters())
def test_what_the_pushwoosh_client_renders_parses_to_what_it_means(
    client_filter: Any, expected: Node
) -> None:
    text = str(client_filter)
    assert parse_filter(text) == expected
    assert parse_filter(render(expected)) == expected


def test_every_platform_the_client_names_parses() -> None:
    for code in constants.PLATFORMS:
        node = parse_filter(str(pwf.ApplicationFilter("X", [code])))
        assert node == Application(code="X", platforms=(code,))


def test_every_operator_of_every_client_tag_filter_parses() -> None:
    operands: dict[str, Any] = {
        "EQ": 1,
        "NOTEQ": 1,
        "GTE": 1,
        "LTE": 1,
        "IN": [1, 2],
        "NOTIN": [1, 2],
        "BETWEEN": [1, 2],
    }
    classes = [
        pwf.IntegerTagFilter,
        pwf.StringTagFilter,
        pwf.ListTagFilter,
        pwf.DaysTagFilter,
        pwf.BooleanTagFilter,
    ]
    seen = 0
    for cls in classes:
        for op in cls.operators:
            node = parse_filter(str(cls("t", op, operands[op])))
            assert isinstance(node, TagCondition)
            assert node.op == op
            seen += 1
    for op in pwf.DateTagFilter.operators:
        operand = ["2024-01-01", "2024-02-01"] if op in ("IN", "NOTIN", "BETWEEN") else "2024-01-01"
        assert parse_filter(str(pwf.DateTagFilter("d", op, operand))).op == op  # type: ignore[union-attr]
        seen += 1
    assert seen == 7 + 4 + 2 + 7 + 1 + 7


def test_application_groups_are_refused_as_not_supported() -> None:
    with pytest.raises(FilterSyntaxError) as err:
        parse_filter(f'(A("X") + {pwf.ApplicationGroupFilter("GRP-1")})')
    assert err.value.column == 11
    assert str(err.value) == "not supported at column 11: G(...) (application groups)"


# -- syntax errors point at the right column -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "detail"),
    [
        ('A("X"', 6, "unexpected end of input"),
        ('A("X") +', 9, "unexpected end of input"),
        ('T("a", EQQ, 1)', 8, "unknown operator EQQ"),
        ('T("a", EQ)', 8, "operator EQ needs an operand"),
        ('T("a", NOTSET, 1)', 8, "operator NOTSET takes no operand"),
        ('(A("X") * T("level", GTE, 5)) ) ', 31, "unexpected ')'"),
        ('(A("X") * T("a", EQ, [1,]))', 25, "unexpected ']'"),
        ('A("X") # A("Y")', 8, "unexpected character '#'"),
        ('A("X", ["NOPE"])', 9, 'unknown platform "NOPE"'),
        ('T("a", EQ, "unterminated)', 12, "unexpected character '\"'"),
        ("   ", 1, "empty expression"),
        ('A(X")', 3, "unexpected 'X', expected a string"),
        ('T("a", EQ, 1.5e3)', 15, "unexpected 'e3'"),
    ],
)
def test_syntax_errors_point_at_the_right_column(text: str, column: int, detail: str) -> None:
    with pytest.raises(FilterSyntaxError) as err:
        parse_filter(text)
    assert err.value.column == column, str(err.value)
    assert str(err.value).startswith(f"syntax error at column {column}: {detail}"), str(err.value)


def test_deep_nesting_and_huge_inputs_are_refused_not_crashed() -> None:
    deep = "(" * 40 + 'A("X")' + ")" * 40
    assert parse_filter(deep) == Application(code="X")  # parentheses alone add no depth
    nested = 'A("X")'
    for _ in range(40):
        nested = f'({nested} \\ A("Y"))'
    with pytest.raises(TargetingError, match="nested deeper"):
        parse_filter(nested)
    with pytest.raises(FilterSyntaxError, match="longer than"):
        parse_filter('A("' + "x" * 20_000 + '")')


# -- render and parse ---------------------------------------------------------------------


def test_render_is_canonical_and_parenthesised() -> None:
    node = parse_filter('A("X", ["ios", "Android"]) + A("Y") * T("a b", IN, [1, "q\\"r", true])')
    assert render(node) == (
        '(A("X", ["IOS", "ANDROID"]) + (A("Y") * T("a b", IN, [1, "q\\"r", true])))'
    )
    assert (
        render(parse_filter('T("x", ANY) \\ T("y", NOTSET)')) == '(T("x", ANY) \\ T("y", NOTSET))'
    )
    assert (
        render(TagCondition(tag="p", op="EQ", operand=1e20))
        == 'T("p", EQ, 100000000000000000000.0)'
    )
    assert render(TagCondition(tag="p", op="EQ", operand=-1.5e-5)) == 'T("p", EQ, -0.000015)'


def test_a_backslash_in_a_string_stands_for_itself_unless_it_escapes() -> None:
    # Pushwoosh's client does not escape: a lone backslash survives.
    node = parse_filter('T("a\\b", EQ, "c\\\\d")')
    assert node == TagCondition(tag="a\\b", op="EQ", operand="c\\d")
    assert parse_filter(render(node)) == node


_text = st.text(max_size=8)
_scalar = st.one_of(
    _text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6).map(lambda n: n / 100),
    st.floats(allow_nan=False, allow_infinity=False),
)
_operand = st.one_of(_scalar, st.lists(_scalar, max_size=4).map(tuple))
_platforms = st.lists(
    st.sampled_from([1, 3, 7, 10, 11, 12, 17]), min_size=1, max_size=3, unique=True
).map(tuple)
_leaf = st.one_of(
    st.builds(
        Application,
        code=_text,
        platforms=st.none()
        | st.lists(
            st.sampled_from([1, 3, 7, 10, 11, 12, 17]), min_size=1, max_size=3, unique=True
        ).map(tuple),
    ),
    st.builds(
        TagCondition,
        tag=_text,
        op=st.sampled_from(["EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN"]),
        operand=_operand,
        app=st.none() | _text,
    ),
    st.builds(
        TagCondition, tag=_text, op=st.sampled_from(["NOTSET", "ANY"]), app=st.none() | _text
    ),
)


def _not(kind: type) -> Any:
    return lambda node: not isinstance(node, kind)


def _extend(children: Any) -> Any:
    return st.one_of(
        st.lists(children.filter(_not(Union)), min_size=2, max_size=3).map(
            lambda items: Union(items=tuple(items))
        ),
        st.lists(children.filter(_not(Intersection)), min_size=2, max_size=3).map(
            lambda items: Intersection(items=tuple(items))
        ),
        st.builds(Difference, left=children, right=children),
    )


_trees = st.recursive(_leaf, _extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_render_then_parse_gives_the_same_tree(node: Node) -> None:
    text = render(node)
    again = parse_filter(text)
    assert again == node
    assert render(again) == text
    assert decode_node(encode_node(node)) == node


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='AT()GEQN[],"\\+*-.0123456789 truefalsINOB', max_size=40))
def test_arbitrary_text_parses_or_is_a_syntax_error(text: str) -> None:
    try:
        node = parse_filter(text)
    except FilterSyntaxError as exc:
        column = exc.column
    except TargetingError:
        return
    else:
        assert parse_filter(render(node)) == node
        return
    assert 1 <= column <= len(text) + 1


def test_applications_lists_every_code_once_in_order() -> None:
    node = parse_filter('(A("B") + AT("C", "x", EQ, 1)) \\ (A("B") * T("y", ANY))')
    assert applications(node) == ["B", "C"]


# -- conditions ----------------------------------------------------------------------------


def test_conditions_become_an_intersection_or_a_union() -> None:
    conditions = [["level", "GTE", 3], ["city", "in", ["Paris"]], ["gone", "NOTSET", None]]
    assert from_conditions(conditions) == Intersection(
        items=(
            TagCondition(tag="level", op="GTE", operand=3),
            TagCondition(tag="city", op="IN", operand=("Paris",)),
            TagCondition(tag="gone", op="NOTSET"),
        )
    )
    assert from_conditions(conditions, "or") == Union(
        items=from_conditions(conditions).items  # type: ignore[union-attr]
    )
    assert from_conditions([["vip", "ANY"]]) == TagCondition(tag="vip", op="ANY")
    assert render(from_conditions([["d", "EQ", "2024-01-01"]])) == 'T("d", EQ, "2024-01-01")'


@pytest.mark.parametrize(
    ("conditions", "operator", "message"),
    [
        ([], "AND", "conditions: must be a non-empty list"),
        ([["a", "EQ", 1]], "XOR", "conditions_operator: must be AND or OR"),
        ([["a", "EQ", 1], ["b", "LIKE", 1]], "AND", "conditions[1]: unknown operator 'LIKE'"),
        ([["a", "EQ"]], "AND", "conditions[0]: operator EQ needs a value"),
        ([["a", "EQ", None]], "AND", "conditions[0]: operator EQ needs a value"),
        ([["a", "NOTSET", 1]], "AND", "conditions[0]: operator NOTSET takes no value"),
        ([["", "EQ", 1]], "AND", "conditions[0]: the tag name must be a non-empty string"),
        ([["a", "EQ", {"x": 1}]], "AND", "conditions[0]: must be a string, number"),
        ([["a", "IN", [[1]]]], "AND", "conditions[0]: list values must be"),
        (["a"], "AND", 'conditions[0]: must be ["tag", "OPERATOR", value]'),
        ([["a", "EQ", 1, 2]], "AND", 'conditions[0]: must be ["tag", "OPERATOR", value]'),
    ],
)
def test_malformed_conditions_are_named(conditions: Any, operator: str, message: str) -> None:
    with pytest.raises(TargetingError) as err:
        from_conditions(conditions, operator)
    assert str(err.value).startswith(message), str(err.value)


def test_dates_render_as_the_client_normalises_them() -> None:
    text = str(pwf.DateTagFilter("d", "EQ", dt.date(2024, 5, 1)))
    assert parse_filter(text) == TagCondition(tag="d", op="EQ", operand="2024-05-01")
