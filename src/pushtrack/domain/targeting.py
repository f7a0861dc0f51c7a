"""Who a message is for: the selection AST, Pushwoosh's filter language, conditions.

A selection is a tree of frozen msgspec Structs (a tagged union, so it
encodes to JSON and back and is stored with a message or a saved filter):

- ``Application(code, platforms)``: every device of one application
  (``A("CODE")``), optionally only some device types (``A("CODE", ["iOS"])``);
- ``TagCondition(app, tag, op, operand)``: devices whose tag satisfies the
  operator (``T("tag", OP, operand)``; with ``app``, ``AT("CODE", "tag", OP, operand)``);
- ``Union(items)`` (``+``), ``Intersection(items)`` (``*``), ``Difference(left, right)`` (``\\``).

Three ways in: ``parse_filter`` (the filter language, as ``devices_filter``
and saved filters hold it), ``from_conditions`` (createMessage's
``conditions`` and ``conditions_operator``), ``decode_node`` (a stored tree);
and two ways out: ``render`` (canonical filter-language text) and
``encode_node`` (JSON). Nothing here knows tag types or the database: the
store checks a tree against an application's tag definitions and compiles it.

Grammar decisions of our own (Pushwoosh's own client always parenthesises, so
these matter only for hand-written text): ``*`` binds tighter than ``+`` and
``\\``, which are left-associative at one level; ``NOTSET`` and ``ANY`` take no
operand; in a string ``\\"`` is a quote and ``\\\\`` a backslash, any other
backslash stands for itself; ``true``/``false`` are literals. ``G(...)``
(application groups) parses but is refused as not supported.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, Literal

import msgspec
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from pushtrack.domain.platforms import FILTER_NAMES, FILTER_NUMBERS, filter_code

__all__ = [
    "OPERATORS",
    "Application",
    "Difference",
    "FilterSyntaxError",
    "Intersection",
    "Node",
    "Operand",
    "Operator",
    "Scalar",
    "TagCondition",
    "TargetingError",
    "Union",
    "applications",
    "decode_node",
    "encode_node",
    "from_conditions",
    "parse_filter",
    "render",
    "tag_conditions",
]

#: The longest filter expression accepted, in characters.
MAX_FILTER_LENGTH = 10_000
#: How deeply set operations may nest (the store compiles trees recursively).
MAX_DEPTH = 32
#: Most tag conditions and application terms in one selection.
MAX_TERMS = 200
#: Most values in one list operand.
MAX_LIST = 1000


class TargetingError(ValueError):
    """A selection that cannot be understood; ``message`` is for the caller."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class FilterSyntaxError(TargetingError):
    """Filter-language text that does not parse; ``column`` is 1-based."""

    def __init__(self, column: int, detail: str, what: str = "syntax error") -> None:
        self.column = column
        self.detail = detail
        super().__init__(f"{what} at column {column}: {detail}")


Operator = Literal["EQ", "NOTEQ", "IN", "NOTIN", "GTE", "LTE", "BETWEEN", "NOTSET", "ANY"]
OPERATORS: tuple[str, ...] = (
    "EQ",
    "NOTEQ",
    "IN",
    "NOTIN",
    "GTE",
    "LTE",
    "BETWEEN",
    "NOTSET",
    "ANY",
)
#: Operators that take no operand.
NO_OPERAND: frozenset[str] = frozenset({"NOTSET", "ANY"})

Scalar = bool | int | float | str
Operand = Scalar | tuple[Scalar, ...] | None


class Application(msgspec.Struct, frozen=True, tag="application", omit_defaults=True):
    """``A("CODE")``: devices of one application; ``platforms`` narrows to device types."""

    code: str
    platforms: tuple[int, ...] | None = None


class TagCondition(msgspec.Struct, frozen=True, tag="tag", omit_defaults=True):
    """``T("tag", OP, operand)``, or ``AT("app", ...)`` when ``app`` is given."""

    tag: str
    op: Operator
    operand: Operand = None
    app: str | None = None


class Union(msgspec.Struct, frozen=True, tag="union"):
    """``(X + Y + ...)``: devices selected by any item."""

    items: tuple[Node, ...]


class Intersection(msgspec.Struct, frozen=True, tag="intersection"):
    """``(X * Y * ...)``: devices selected by every item."""

    items: tuple[Node, ...]


class Difference(msgspec.Struct, frozen=True, tag="difference"):
    """``(X \\ Y)``: devices selected by ``left`` and not by ``right``."""

    left: Node
    right: Node


Node = Application | TagCondition | Union | Intersection | Difference

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Node] = msgspec.json.Decoder(Node)


def encode_node(node: Node) -> bytes:
    """The tree as JSON (to store with a message or a saved filter)."""
    return _encoder.encode(node)


def decode_node(data: bytes | str) -> Node:
    """A tree stored by ``encode_node``."""
    return _decoder.decode(data)


# -- the filter language --------------------------------------------------------------------

_GRAMMAR = r"""
?start: expr

?expr: expr "+" term          -> union
     | expr "\\" term         -> difference
     | term

?term: term "*" atom          -> intersection
     | atom

?atom: app
     | group
     | tag
     | apptag
     | "(" expr ")"

app: "A" "(" STRING ["," platforms] ")"
group: G "(" STRING ["," platforms] ")"
tag: "T" "(" STRING "," WORD ["," operand] ")"
apptag: "AT" "(" STRING "," STRING "," WORD ["," operand] ")"

platforms: "[" [platform ("," platform)*] "]"
?platform: STRING | INT

?operand: scalar
        | list
list: "[" [scalar ("," scalar)*] "]"
?scalar: STRING
       | INT
       | DECIMAL
       | TRUE
       | FALSE

STRING: /"(?:[^"\\]|\\.)*"/
DECIMAL.2: /-?\d+\.\d+/
INT: /-?\d+/
TRUE.3: "true"
FALSE.3: "false"
WORD: /[A-Za-z_][A-Za-z_0-9]*/
G: "G"

%import common.WS
%ignore WS
"""


def _unquote(token: Token) -> str:
    body = str(token)[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in '"\\':
            out.append(body[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _column(token: Token) -> int:
    pos = token.start_pos
    return (pos if pos is not None else 0) + 1


def _scalar(token: Token) -> Scalar:
    kind = token.type
    if kind == "STRING":
        return _unquote(token)
    if kind == "INT":
        return int(token)
    if kind == "DECIMAL":
        return float(token)
    if kind == "TRUE":
        return True
    if kind == "FALSE":
        return False
    raise FilterSyntaxError(_column(token), f"unexpected {token!s}")


def _operand(value: Token | tuple[Scalar, ...] | None) -> Operand:
    if value is None or isinstance(value, tuple):
        return value
    return _scalar(value)


def _condition(
    app: str | None, name: Token, word: Token, operand: Token | tuple[Scalar, ...] | None
) -> TagCondition:
    op = str(word)
    if op not in OPERATORS:
        raise FilterSyntaxError(_column(word), f"unknown operator {op}")
    if op in NO_OPERAND:
        if operand is not None:
            raise FilterSyntaxError(_column(word), f"operator {op} takes no operand")
    elif operand is None:
        raise FilterSyntaxError(_column(word), f"operator {op} needs an operand")
    return TagCondition(tag=_unquote(name), op=op, operand=_operand(operand), app=app)  # type: ignore[arg-type]


def _flat(kind: type[Union] | type[Intersection], left: Node, right: Node) -> Node:
    items: list[Node] = []
    for side in (left, right):
        if isinstance(side, kind):
            items.extend(side.items)
        else:
            items.append(side)
    return kind(items=tuple(items))


@v_args(inline=True)
class _Build(Transformer[Token, Node]):
    def app(self, code: Token, platforms: tuple[int, ...] | None) -> Application:
        return Application(code=_unquote(code), platforms=platforms)

    def group(self, g: Token, code: Token, platforms: tuple[int, ...] | None) -> Node:
        raise FilterSyntaxError(_column(g), "G(...) (application groups)", what="not supported")

    def platforms(self, *items: Token | None) -> tuple[int, ...]:
        codes: list[int] = []
        for item in items:
            if item is None:
                continue
            if item.type == "INT":
                number = int(item)
                if number not in FILTER_NUMBERS:
                    raise FilterSyntaxError(_column(item), f"unknown platform {number}")
                codes.append(number)
                continue
            code = filter_code(_unquote(item))
            if code is None:
                raise FilterSyntaxError(_column(item), f"unknown platform {item!s}")
            codes.append(code)
        return tuple(dict.fromkeys(codes))

    def list(self, *items: Token | None) -> tuple[Scalar, ...]:
        values = tuple(_scalar(item) for item in items if item is not None)
        if len(values) > MAX_LIST:
            first = next(item for item in items if item is not None)
            raise FilterSyntaxError(_column(first), f"more than {MAX_LIST} values in a list")
        return values

    def tag(
        self, name: Token, word: Token, operand: Token | tuple[Scalar, ...] | None
    ) -> TagCondition:
        return _condition(None, name, word, operand)

    def apptag(
        self, app: Token, name: Token, word: Token, operand: Token | tuple[Scalar, ...] | None
    ) -> TagCondition:
        return _condition(_unquote(app), name, word, operand)

    def union(self, left: Node, right: Node) -> Node:
        return _flat(Union, left, right)

    def intersection(self, left: Node, right: Node) -> Node:
        return _flat(Intersection, left, right)

    def difference(self, left: Node, right: Node) -> Node:
        return Difference(left=left, right=right)


@functools.cache
def _parser() -> Lark:
    return Lark(
        _GRAMMAR,
        parser="lalr",
        lexer="contextual",
        propagate_positions=False,
        maybe_placeholders=True,
    )


_TOKEN_WORDS = {
    "LPAR": '"("',
    "RPAR": '")"',
    "LSQB": '"["',
    "RSQB": '"]"',
    "COMMA": '","',
    "PLUS": '"+"',
    "STAR": '"*"',
    "BACKSLASH": '"\\"',
    "STRING": "a string",
    "INT": "an integer",
    "DECIMAL": "a number",
    "TRUE": "true",
    "FALSE": "false",
    "WORD": "an operator",
    "A": "A(",
    "AT": "AT(",
    "T": "T(",
    "G": "G(",
    "$END": "end of input",
}


def _expected(expected: Any) -> str:
    if not expected:
        return ""
    names = {str(getattr(n, "type", n)) for n in expected}
    words = sorted({_TOKEN_WORDS.get(n, n) for n in names if not n.startswith("__ANON")})
    if not words:
        return ""
    if len(words) > 6:
        words = [*words[:6], "..."]
    return ", expected " + " or ".join(words)


def _syntax_error(text: str, exc: UnexpectedInput) -> FilterSyntaxError:
    if isinstance(exc, UnexpectedEOF):
        return FilterSyntaxError(len(text) + 1, "unexpected end of input" + _expected(exc.expected))
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            return FilterSyntaxError(
                len(text) + 1, "unexpected end of input" + _expected(exc.expected)
            )
        return FilterSyntaxError(
            _column(token), f"unexpected {str(token)[:40]!r}" + _expected(exc.expected)
        )
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        return FilterSyntaxError(pos + 1, f"unexpected character {ch!r}" + _expected(exc.allowed))
    where: int | None = getattr(exc, "pos_in_stream", None)
    return FilterSyntaxError((where or 0) + 1, "cannot parse")


def parse_filter(text: str) -> Node:
    """Filter-language text as a tree; ``FilterSyntaxError`` says where it went wrong."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(
            MAX_FILTER_LENGTH + 1, f"longer than {MAX_FILTER_LENGTH} characters"
        )
    if not text.strip():
        raise FilterSyntaxError(1, "empty expression")
    parser = _parser()
    try:
        tree = parser.parse(text)
        node = _Build().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, TargetingError):
            raise exc.orig_exc from None
        raise
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    check_size(node)
    return node


def check_size(node: Node) -> None:
    """Refuse trees deeper than ``MAX_DEPTH`` or with more than ``MAX_TERMS`` leaves."""
    terms = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TargetingError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(current, Union | Intersection):
            stack.extend((item, depth + 1) for item in current.items)
        elif isinstance(current, Difference):
            stack.append((current.left, depth + 1))
            stack.append((current.right, depth + 1))
        else:
            terms += 1
            if terms > MAX_TERMS:
                raise TargetingError(f"more than {MAX_TERMS} terms")


# -- createMessage conditions -------------------------------------------------------------


def _json_operand(value: Any, where: str) -> Operand:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        if len(value) > MAX_LIST:
            raise TargetingError(f"{where}: more than {MAX_LIST} values")
        items: list[Scalar] = []
        for item in value:
            if not isinstance(item, bool | int | float | str):
                raise TargetingError(f"{where}: list values must be strings, numbers or booleans")
            items.append(item)
        return tuple(items)
    raise TargetingError(f"{where}: must be a string, number, boolean or list")


def from_conditions(
    conditions: Any,
    operator: str | None = "AND",
    *,
    field: str = "conditions",
    operator_field: str = "conditions_operator",
) -> Node:
    """createMessage's ``conditions`` (``[["tag", "OP", value], ...]``) as a tree.

    ``operator`` is ``conditions_operator``: ``AND`` (every condition, also when
    None) or ``OR`` (any). Errors name the condition: ``conditions[1]: ...``
    (``field`` and ``operator_field`` name the request's fields).
    """
    op = (operator or "AND").upper() if isinstance(operator, str | None) else operator
    if op not in ("AND", "OR"):
        raise TargetingError(f"{operator_field}: must be AND or OR")
    if not isinstance(conditions, list | tuple) or not conditions:
        raise TargetingError(f"{field}: must be a non-empty list")
    if len(conditions) > MAX_TERMS:
        raise TargetingError(f"{field}: more than {MAX_TERMS} conditions")
    nodes: list[Node] = []
    for i, item in enumerate(conditions):
        where = f"{field}[{i}]"
        if not isinstance(item, list | tuple) or not 2 <= len(item) <= 3:
            raise TargetingError(f'{where}: must be ["tag", "OPERATOR", value]')
        name, cond_op = item[0], item[1]
        if not isinstance(name, str) or not name:
            raise TargetingError(f"{where}: the tag name must be a non-empty string")
        if not isinstance(cond_op, str) or cond_op.upper() not in OPERATORS:
            raise TargetingError(
                f"{where}: unknown operator {cond_op!r} (one of {', '.join(OPERATORS)})"
            )
        cond_op = cond_op.upper()
        value = item[2] if len(item) == 3 else None
        if cond_op in NO_OPERAND:
            if value is not None:
                raise TargetingError(f"{where}: operator {cond_op} takes no value")
        elif len(item) < 3 or value is None:
            raise TargetingError(f"{where}: operator {cond_op} needs a value")
        nodes.append(
            TagCondition(tag=name, op=cond_op, operand=_json_operand(value, where))  # type: ignore[arg-type]
        )
    if len(nodes) == 1:
        return nodes[0]
    return Intersection(items=tuple(nodes)) if op == "AND" else Union(items=tuple(nodes))


# -- back to text ----------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")  # positional, as short as repr
        return text if "." in text else text + ".0"
    return _quote(value)


def _render_operand(value: Operand) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_render_scalar(v) for v in value) + "]"
    assert value is not None
    return _render_scalar(value)


def _render_platform(code: int) -> str:
    name = FILTER_NAMES.get(code)
    return str(code) if name is None else _quote(name)


def render(node: Node) -> str:
    """Canonical filter-language text: set operations always parenthesised."""
    if isinstance(node, Application):
        if node.platforms is None:
            return f"A({_quote(node.code)})"
        names = ", ".join(_render_platform(p) for p in node.platforms)
        return f"A({_quote(node.code)}, [{names}])"
    if isinstance(node, TagCondition):
        head = f"AT({_quote(node.app)}, " if node.app is not None else "T("
        tail = "" if node.op in NO_OPERAND else f", {_render_operand(node.operand)}"
        return f"{head}{_quote(node.tag)}, {node.op}{tail})"
    if isinstance(node, Union):
        return "(" + " + ".join(render(item) for item in node.items) + ")"
    if isinstance(node, Intersection):
        return "(" + " * ".join(render(item) for item in node.items) + ")"
    return f"({render(node.left)} \\ {render(node.right)})"


# -- walking ----------------------------------------------------------------------------------


def _walk(node: Node) -> list[Application | TagCondition]:
    leaves: list[Application | TagCondition] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Union | Intersection):
            stack.extend(reversed(current.items))
        elif isinstance(current, Difference):
            stack.append(current.right)
            stack.append(current.left)
        else:
            leaves.append(current)
    return leaves


def applications(node: Node) -> list[str]:
    """Application codes the tree names (``A`` and ``AT``), first mention first."""
    codes: dict[str, None] = {}
    for leaf in _walk(node):
        code = leaf.code if isinstance(leaf, Application) else leaf.app
        if code is not None:
            codes.setdefault(code)
    return list(codes)


def tag_conditions(node: Node) -> list[TagCondition]:
    """The tree's tag conditions, left to right."""
    return [leaf for leaf in _walk(node) if isinstance(leaf, TagCondition)]
