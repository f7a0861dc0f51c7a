"""Tags, tag definitions, saved filters, and the selection compiler.

Tables (see the migration in ``schema.py`` / ``pg_schema.py``):

- ``tag_defs (id, app_id, name, type, declared)``: a tag's type per application,
  declared by ``addTag`` (``declared = 1``) or inferred from its first value;
- ``tag_values (device_id, tag_id, num, txt)``: one row per scalar value, one
  per list element (``num`` then holds its position); indexed by
  ``(device_id, tag_id, num)`` for reads, deletes and per-device probes, and by
  ``(tag_id, num, device_id)`` / ``(tag_id, txt, device_id)`` for lookups by value;
- ``saved_filters``: per account (optionally tied to one application), the
  filter-language text, the selection tree as JSON, and the original conditions.

``audience_where(tx, app, node)`` compiles a selection tree into a boolean SQL
expression over ``devices d``: each tag condition is an ``EXISTS`` probe into
``tag_values`` by ``(device_id, tag_id)`` (or ``(tag_id, value, device_id)``
for equality), so a scan of an application's devices in id order, the shape
of a batched expansion, costs one index probe per device and condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import msgspec

from pushtrack.domain import targeting as t
from pushtrack.domain.tags import (
    BUILTIN,
    MAX_LIST_ITEMS,
    ListChange,
    Predicate,
    Present,
    Ranges,
    Row,
    TagType,
    TagValueError,
    Values,
    compile_condition,
    infer_type,
    stored_rows,
    wire_value,
)
from pushtrack.domain.timeutil import US
from pushtrack.store.base import App, ConflictError, Engine, Tx

__all__ = [
    "MAX_TAGS_PER_CALL",
    "SavedFilter",
    "SelectionError",
    "TagDef",
    "TagError",
    "TargetingStore",
    "audience_where",
    "check_selection",
    "set_device_tags",
]

#: Most tags one setTags (or registerDevice) call may set.
MAX_TAGS_PER_CALL = 100
#: Most tags one application may define.
MAX_TAGS_PER_APP = 1000
MAX_TAG_NAME = 128


class TagError(ConflictError):
    """A tag value or definition the caller got wrong; ``message`` names the tag."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class SelectionError(ConflictError):
    """A selection that does not fit the tags of its applications.

    ``message`` names the condition: ``conditions[1]: tag "level" is not defined``.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class TagDef(msgspec.Struct, frozen=True):
    id: int
    name: str
    type: TagType
    #: Declared by addTag (True) or inferred from the first value set (False).
    declared: bool
    created_at: int


class SavedFilter(msgspec.Struct, frozen=True):
    name: str
    #: Canonical filter-language text.
    expression: str
    selection: t.Node
    #: The conditions it was created from, as given (None: created from an expression).
    conditions: list[Any] | None
    operator: str | None
    #: The application it is tied to, if any.
    application: str | None
    created_at: int


_json = msgspec.json.Encoder()


def _dumps(value: Any) -> str:
    return _json.encode(value).decode()


# -- tag definitions ---------------------------------------------------------------------


class _DefRow(NamedTuple):
    id: int
    name: str
    type: int
    declared: int
    created_at: int


def _def_from_row(row: _DefRow) -> TagDef:
    return TagDef(
        id=row.id,
        name=row.name,
        type=TagType(row.type),
        declared=bool(row.declared),
        created_at=row.created_at,
    )


_DEF_COLUMNS = ", ".join(_DefRow._fields)


def tag_defs(tx: Tx, app: App, names: Sequence[str] | None = None) -> dict[str, TagDef]:
    """The application's tag definitions by name (only ``names`` when given)."""
    if names is None:
        rows = tx.all_as(
            _DefRow,
            f"SELECT {_DEF_COLUMNS} FROM tag_defs WHERE app_id = ? ORDER BY name",
            (app.id,),
        )
    elif not names:
        return {}
    else:
        unique = sorted(set(names))
        marks = ", ".join("?" for _ in unique)
        rows = tx.all_as(
            _DefRow,
            f"SELECT {_DEF_COLUMNS} FROM tag_defs WHERE app_id = ? AND name IN ({marks})",
            (app.id, *unique),
        )
    return {row.name: _def_from_row(row) for row in rows}


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_TAG_NAME:
        raise TagError(f"tag name must be 1 to {MAX_TAG_NAME} characters")
    if name in BUILTIN:
        raise TagError(f'tag "{name}" is built in: registerDevice sets it')


def _insert_def(tx: Tx, app: App, name: str, tag_type: TagType, declared: bool) -> TagDef:
    count = tx.scalar("SELECT COUNT(*) FROM tag_defs WHERE app_id = ?", (app.id,))
    if count is not None and count >= MAX_TAGS_PER_APP:
        raise TagError(f"an application has at most {MAX_TAGS_PER_APP} tags")
    tx.run(
        "INSERT INTO tag_defs (app_id, name, type, declared, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (app_id, name) DO NOTHING",
        (app.id, name, int(tag_type), int(declared), tx.now()),
    )
    row = tx.one_as(
        _DefRow,
        f"SELECT {_DEF_COLUMNS} FROM tag_defs WHERE app_id = ? AND name = ?",
        (app.id, name),
    )
    assert row is not None
    return _def_from_row(row)


def add_tag(tx: Tx, app: App, name: str, tag_type: TagType) -> TagDef:
    """Declare a tag; declaring it again with the same type changes nothing."""
    _check_name(name)
    found = tag_defs(tx, app, [name]).get(name)
    if found is not None:
        if found.type is not tag_type:
            raise TagError(f'tag "{name}" already exists as {found.type.label}')
        if not found.declared:
            tx.run("UPDATE tag_defs SET declared = 1 WHERE id = ?", (found.id,))
            return msgspec.structs.replace(found, declared=True)
        return found
    made = _insert_def(tx, app, name, tag_type, declared=True)
    if made.type is not tag_type:  # another writer inferred it meanwhile
        raise TagError(f'tag "{name}" already exists as {made.type.label}')
    return made


def delete_tag(tx: Tx, app: App, name: str) -> bool:
    """Remove a tag and every device's value of it; False if it did not exist."""
    found = tag_defs(tx, app, [name]).get(name)
    if found is None:
        return False
    tx.run("DELETE FROM tag_values WHERE tag_id = ?", (found.id,))
    tx.run("DELETE FROM tag_defs WHERE id = ?", (found.id,))
    return True


# -- device values -----------------------------------------------------------------------


def device_id(tx: Tx, app: App, hwid: str, *, lock: bool = False) -> int | None:
    """A device's id; with ``lock`` the device row is locked (writes to its tags queue up)."""
    if lock:
        found = tx.scalar(
            "UPDATE devices SET updated_at = ? WHERE app_id = ? AND hwid = ? RETURNING id",
            (tx.now(), app.id, hwid),
        )
    else:
        found = tx.scalar("SELECT id FROM devices WHERE app_id = ? AND hwid = ?", (app.id, hwid))
    return int(found) if found is not None else None


def set_device_tags(tx: Tx, app: App, device: int, tags: dict[str, Any]) -> None:
    """Set (or with ``None`` remove) tags of one device, in the caller's transaction.

    The device row must be locked by the caller (an UPDATE of it in this
    transaction), so concurrent writes to one device's tags run one after another.
    A tag nobody defined gets its type from the value (``infer_type``).
    ``TagError`` names the tag whose value does not fit.
    """
    if len(tags) > MAX_TAGS_PER_CALL:
        raise TagError(f"at most {MAX_TAGS_PER_CALL} tags per call")
    for name in tags:
        _check_name(name)
    defs = tag_defs(tx, app, list(tags))
    for name, value in tags.items():
        found = defs.get(name)
        if value is None:
            if found is not None:
                tx.run(
                    "DELETE FROM tag_values WHERE device_id = ? AND tag_id = ?", (device, found.id)
                )
            continue
        if found is None:
            inferred = infer_type(value)
            if inferred is None:
                raise TagError(f'tag "{name}": a value must be a string, number, boolean or list')
            found = _insert_def(tx, app, name, inferred, declared=False)
        try:
            change = stored_rows(found.type, name, value)
        except TagValueError as exc:
            raise TagError(exc.message) from None
        if isinstance(change, ListChange):
            _change_list(tx, device, found.id, change)
            continue
        tx.run("DELETE FROM tag_values WHERE device_id = ? AND tag_id = ?", (device, found.id))
        rows: list[Row] = change
        if found.type is TagType.LIST:
            rows = [(i, txt) for i, (_, txt) in enumerate(rows)]
        tx.many(
            "INSERT INTO tag_values (device_id, tag_id, num, txt) VALUES (?, ?, ?, ?)",
            [(device, found.id, num, txt) for num, txt in rows],
        )


def _change_list(tx: Tx, device: int, tag: int, change: ListChange) -> None:
    if not change.items:
        return
    marks = ", ".join("?" for _ in change.items)
    if change.operation == "remove":
        tx.run(
            f"DELETE FROM tag_values WHERE device_id = ? AND tag_id = ? AND txt IN ({marks})",
            (device, tag, *change.items),
        )
        return
    rows = tx.all_as(
        _ValueRow,
        "SELECT num, txt FROM tag_values WHERE device_id = ? AND tag_id = ?",
        (device, tag),
    )
    have = {r.txt for r in rows}
    top = max((r.num for r in rows if r.num is not None), default=-1)
    new = [item for item in change.items if item not in have]
    if len(have) + len(new) > MAX_LIST_ITEMS:
        raise TagError(f"a list tag holds at most {MAX_LIST_ITEMS} elements")
    tx.many(
        "INSERT INTO tag_values (device_id, tag_id, num, txt) VALUES (?, ?, ?, ?)",
        [(device, tag, top + 1 + i, item) for i, item in enumerate(new)],
    )


class _ValueRow(NamedTuple):
    """A stored tag value (``domain/tags.py``'s ``Row``)."""

    num: int | None
    txt: str | None


def set_tags(tx: Tx, app: App, hwid: str, tags: dict[str, Any]) -> bool:
    """Set tags of a registered device; False if there is no such device."""
    device = device_id(tx, app, hwid, lock=True)
    if device is None:
        return False
    set_device_tags(tx, app, device, tags)
    return True


def get_tags(tx: Tx, app: App, hwid: str) -> dict[str, Any] | None:
    """A device's tags in their wire form; None if the device is not registered."""
    device = device_id(tx, app, hwid)
    if device is None:
        return None
    rows = tx.all_as(
        _TagValue,
        "SELECT g.name, g.type, v.num, v.txt FROM tag_values v"
        " JOIN tag_defs g ON g.id = v.tag_id"
        " WHERE v.device_id = ? ORDER BY g.name, v.num",
        (device,),
    )
    grouped: dict[str, tuple[TagType, list[Row]]] = {}
    for r in rows:
        grouped.setdefault(r.name, (TagType(r.type), []))[1].append((r.num, r.txt))
    return {name: wire_value(kind, values) for name, (kind, values) in grouped.items()}


class _TagValue(NamedTuple):
    name: str
    type: int
    num: int | None
    txt: str | None


# -- checking a selection -------------------------------------------------------------------


def _label(field: str, indexed: bool, index: int, cond: t.TagCondition) -> str:
    if indexed:
        return f"{field}[{index}]"
    return f"{field}: {t.render(cond)}"


def check_selection(
    tx: Tx,
    apps: Sequence[App],
    node: t.Node,
    *,
    field: str = "conditions",
    indexed: bool = True,
) -> None:
    """Refuse a selection whose tag conditions do not fit the applications' tags.

    ``apps`` are the applications the selection will run over. A condition
    ``T`` must name a tag defined in at least one of them, ``AT("X", ...)`` a
    tag of application X (which must be among ``apps``); operator and operand
    must fit the tag's type wherever it is defined. Errors name the condition:
    ``conditions[i]`` (``indexed``, for createMessage's list, in its order) or
    ``<field>: T("tag", OP, value)``. ``SelectionError`` otherwise.
    """
    by_code = {app.code: app for app in apps}
    conds = t.tag_conditions(node)
    names = sorted({c.tag for c in conds})
    defs = {app.code: tag_defs(tx, app, names) for app in apps}
    for i, cond in enumerate(conds):
        where = _label(field, indexed, i, cond)
        if cond.app is not None:
            if cond.app not in by_code:
                raise SelectionError(f"{where}: application {cond.app} is not targeted")
            scopes = [cond.app]
        else:
            scopes = list(by_code)
        types = [defs[code][cond.tag].type for code in scopes if cond.tag in defs[code]]
        if not types and cond.tag in BUILTIN:
            types = [TagType.STRING]
        if not types:
            raise SelectionError(f'{where}: tag "{cond.tag}" is not defined')
        for tag_type in types:
            try:
                compile_condition(tag_type, cond.tag, cond.op, cond.operand, 0)
            except TagValueError as exc:
                raise SelectionError(f"{where}: {exc.message}") from None


# -- compiling a selection -------------------------------------------------------------------

_TRUE = "1 = 1"
_FALSE = "1 = 0"


def _marks(n: int) -> str:
    return ", ".join("?" for _ in range(n))


class _Compiler:
    """One compilation: SQL text built left to right, parameters in the same order."""

    def __init__(self, tx: Tx, app: App, defs: dict[str, TagDef], after: int | None) -> None:
        self.app = app
        self.defs = defs
        self.now_s = tx.now() // US
        self.after = after
        # SQLite would seek (tag_id, value, device_id) once per listed value; one seek
        # by (device_id, tag_id) and a look at the device's few rows is cheaper.
        self.hint = tx.dialect == "sqlite"
        self.params: list[Any] = []

    def probe(self, tag_id: int, test: str = "", values: Sequence[Any] = ()) -> str:
        """``EXISTS`` a row of the device's tag (``test`` over ``v``, with ``values``)."""
        self.params.append(tag_id)
        bound = ""
        if self.after is not None and not self.hint:
            # Repeats ``d.id > after`` on the tag side: PostgreSQL does not carry an
            # inequality across the join, and would otherwise merge from the first device.
            # (SQLite probes per device; there the bound would turn its seek into a scan.)
            bound = " AND v.device_id > ?"
            self.params.append(self.after)
        self.params.extend(values)
        return (
            "EXISTS (SELECT 1 FROM tag_values v WHERE v.device_id = d.id"
            f" AND v.tag_id = ?{bound}{test})"
        )

    def predicate(self, tag_id: int, pred: Predicate) -> str:
        if isinstance(pred, Present):
            return ("NOT " if pred.negate else "") + self.probe(tag_id)
        if isinstance(pred, Ranges):
            parts: list[str] = []
            values: list[Any] = []
            for lo, hi in pred.ranges:
                if lo is not None and hi is not None and lo == hi:
                    parts.append("v.num = ?")
                    values.append(lo)
                elif lo is not None and hi is not None:
                    parts.append("v.num BETWEEN ? AND ?")
                    values.extend((lo, hi))
                elif lo is not None:
                    parts.append("v.num >= ?")
                    values.append(lo)
                elif hi is not None:
                    parts.append("v.num <= ?")
                    values.append(hi)
                else:
                    parts.append("v.num IS NOT NULL")
            test = " AND " + (parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")
            if pred.negate:
                has = self.probe(tag_id)
                return f"({has} AND NOT {self.probe(tag_id, test, values)})"
            return self.probe(tag_id, test, values)
        column = f"v.{pred.column}"
        if pred.every:
            return (
                "("
                + " AND ".join(self.probe(tag_id, f" AND {column} = ?", (v,)) for v in pred.values)
                + ")"
            )
        values = list(pred.values)
        if len(values) == 1:
            test = f" AND {column} = ?"
        else:
            test = f" AND {'+' if self.hint else ''}{column} IN ({_marks(len(values))})"
        if pred.negate:
            has = self.probe(tag_id)
            return f"({has} AND NOT {self.probe(tag_id, test, values)})"
        return self.probe(tag_id, test, values)

    def builtin(self, node: t.TagCondition) -> str:
        """A built-in tag: a string condition on one of the device's own columns."""
        column = f"d.{BUILTIN[node.tag]}"
        try:
            pred = compile_condition(TagType.STRING, node.tag, node.op, node.operand, self.now_s)
        except TagValueError as exc:
            raise SelectionError(f"{t.render(node)}: {exc.message}") from None
        if isinstance(pred, Present):
            return f"{column} IS {'' if pred.negate else 'NOT '}NULL"
        assert isinstance(pred, Values)
        values: list[Any] = list(pred.values)
        if node.tag == "Language":  # stored in lower case
            values = [str(v).lower() for v in values]
        self.params.extend(values)
        test = f"{column} = ?" if len(values) == 1 else f"{column} IN ({_marks(len(values))})"
        if pred.negate:
            return f"({column} IS NOT NULL AND NOT {test})"
        return test

    def node(self, node: t.Node) -> str:
        if isinstance(node, t.Application):
            if node.code != self.app.code:
                return _FALSE
            if node.platforms is None:
                return _TRUE
            if not node.platforms:
                return _FALSE
            self.params.extend(node.platforms)
            if len(node.platforms) == 1:
                return "d.device_type = ?"
            return f"d.device_type IN ({_marks(len(node.platforms))})"
        if isinstance(node, t.TagCondition):
            if node.app is not None and node.app != self.app.code:
                return _FALSE
            found = self.defs.get(node.tag)
            if found is None and node.tag in BUILTIN:
                return self.builtin(node)
            if found is None:  # nobody has a tag that is not defined
                return _TRUE if node.op == "NOTSET" else _FALSE
            try:
                pred = compile_condition(found.type, node.tag, node.op, node.operand, self.now_s)
            except TagValueError as exc:
                raise SelectionError(f"{t.render(node)}: {exc.message}") from None
            return self.predicate(found.id, pred)
        if isinstance(node, t.Union | t.Intersection):
            glue = " OR " if isinstance(node, t.Union) else " AND "
            return "(" + glue.join(self.node(item) for item in node.items) + ")"
        left = self.node(node.left)
        right = self.node(node.right)
        return f"({left} AND NOT {right})"


def audience_where(
    tx: Tx, app: App, node: t.Node, *, after: int | None = None
) -> tuple[str, list[Any]]:
    """A boolean SQL expression over ``devices d`` (and its parameters) that holds
    for the devices of ``app`` that ``node`` selects.

    The caller restricts to the application itself (``d.app_id = ?``) and adds
    anything else (``d.subscribed = 1``). ``A("X")`` holds iff X is ``app`` (and
    the device type is listed, if a list is given); ``T(...)`` uses ``app``'s
    tags (a tag it does not define is on no device); ``AT("Y", ...)`` holds only
    if Y is ``app``. "Days ago" date operands count from the transaction's clock.

    ``after``: only devices with ``d.id > after`` (the expression says so itself,
    and bounds every tag probe too). Batches walk an audience as
    ``... AND <expr> ORDER BY d.id LIMIT n`` with ``after`` the last id seen: each
    batch then costs index probes for the devices it passes, on both engines.

    A condition that no longer fits its tag's type (the tag was deleted and
    declared again with another type) raises ``SelectionError``: a selection is
    never widened by a condition that silently matches nothing.
    """
    names = sorted({c.tag for c in t.tag_conditions(node) if c.app in (None, app.code)})
    defs = tag_defs(tx, app, names)
    compiler = _Compiler(tx, app, defs, after)
    if after is None:
        return compiler.node(node), compiler.params
    compiler.params.append(after)
    sql = compiler.node(node)
    return f"(d.id > ? AND {sql})", compiler.params


# -- reading an audience --------------------------------------------------------------------


def count(tx: Tx, app: App, node: t.Node) -> int:
    where, params = audience_where(tx, app, node)
    found = tx.scalar(
        f"SELECT COUNT(*) FROM devices d WHERE d.app_id = ? AND {where}", (app.id, *params)
    )
    return int(found or 0)


def select_ids(tx: Tx, app: App, node: t.Node, after: int = 0, limit: int = 1000) -> list[int]:
    """Ids of selected devices above ``after``, ascending, at most ``limit``."""
    where, params = audience_where(tx, app, node, after=after)
    ids = tx.column(
        f"SELECT d.id FROM devices d WHERE d.app_id = ? AND {where} ORDER BY d.id LIMIT ?",
        (app.id, *params, limit),
    )
    return [int(i) for i in ids]


def select_hwids(tx: Tx, app: App, node: t.Node) -> list[str]:
    where, params = audience_where(tx, app, node)
    return tx.column(
        f"SELECT d.hwid FROM devices d WHERE d.app_id = ? AND {where} ORDER BY d.hwid",
        (app.id, *params),
    )


# -- saved filters -----------------------------------------------------------------------------


_FILTER_COLUMNS = (
    "f.name, f.expression, f.selection, f.conditions, f.operator, a.code AS application,"
    " f.created_at"
)
_FILTER_FROM = (
    "saved_filters f JOIN accounts acc ON acc.id = f.account_id"
    " LEFT JOIN applications a ON a.id = f.app_id"
)


class _FilterRow(NamedTuple):
    name: str
    expression: str
    #: JSON text: the selection tree, the conditions as given (NULL: an expression's)
    selection: str
    conditions: str | None
    operator: str | None
    application: str | None
    created_at: int


def _filter_from_row(row: _FilterRow) -> SavedFilter:
    return SavedFilter(
        name=row.name,
        expression=row.expression,
        selection=t.decode_node(row.selection),
        conditions=msgspec.json.decode(row.conditions) if row.conditions is not None else None,
        operator=row.operator,
        application=row.application,
        created_at=row.created_at,
    )


def create_filter(
    tx: Tx,
    account: str,
    name: str,
    node: t.Node,
    *,
    app: App | None = None,
    conditions: list[Any] | None = None,
    operator: str | None = None,
) -> SavedFilter:
    """Save a selection under a name unique in the account (``TagError`` if taken)."""
    account_id = tx.scalar("SELECT id FROM accounts WHERE name = ?", (account,))
    if account_id is None:
        raise ConflictError(f"no account {account!r}")
    made = tx.scalar(
        "INSERT INTO saved_filters (account_id, app_id, name, expression, selection,"
        " conditions, operator, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (account_id, name) DO NOTHING RETURNING id",
        (
            account_id,
            app.id if app else None,
            name,
            t.render(node),
            t.encode_node(node).decode(),
            _dumps(conditions) if conditions is not None else None,
            operator,
            tx.now(),
        ),
    )
    if made is None:
        raise TagError(f'name: a filter named "{name}" already exists')
    found = get_filter(tx, account, name)
    assert found is not None
    return found


def get_filter(tx: Tx, account: str, name: str) -> SavedFilter | None:
    row = tx.one_as(
        _FilterRow,
        f"SELECT {_FILTER_COLUMNS} FROM {_FILTER_FROM} WHERE acc.name = ? AND f.name = ?",
        (account, name),
    )
    return _filter_from_row(row) if row else None


def list_filters(tx: Tx, account: str) -> list[SavedFilter]:
    rows = tx.all_as(
        _FilterRow,
        f"SELECT {_FILTER_COLUMNS} FROM {_FILTER_FROM} WHERE acc.name = ? ORDER BY f.name",
        (account,),
    )
    return [_filter_from_row(r) for r in rows]


def delete_filter(tx: Tx, account: str, name: str) -> bool:
    return (
        tx.run(
            "DELETE FROM saved_filters WHERE name = ?"
            " AND account_id = (SELECT id FROM accounts WHERE name = ?)",
            (name, account),
        )
        > 0
    )


# -- the facade's sub-store ------------------------------------------------------------------


class TargetingStore:
    """``store.targeting``: tags, tag definitions, saved filters, selections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # tags of devices
    async def set_tags(self, app: App, hwid: str, tags: dict[str, Any]) -> bool:
        """Set or (``None``) remove tags of a device; False if it is not registered.

        ``TagError`` names a tag whose value does not fit (nothing is written)."""
        return await self.engine.write(partial(set_tags, app=app, hwid=hwid, tags=tags))

    async def get_tags(self, app: App, hwid: str) -> dict[str, Any] | None:
        """The device's tags in wire form; None if no such device."""
        return await self.engine.read(partial(get_tags, app=app, hwid=hwid))

    # tag definitions
    async def add_tag(self, app: App, name: str, tag_type: TagType) -> TagDef:
        return await self.engine.write(partial(add_tag, app=app, name=name, tag_type=tag_type))

    async def list_tags(self, app: App) -> list[TagDef]:
        found = await self.engine.read(partial(tag_defs, app=app))
        return list(found.values())

    async def delete_tag(self, app: App, name: str) -> bool:
        return await self.engine.write(partial(delete_tag, app=app, name=name))

    # selections
    async def check(
        self,
        apps: Sequence[App],
        node: t.Node,
        *,
        field: str = "conditions",
        indexed: bool = True,
    ) -> None:
        """``check_selection`` in a read transaction (``SelectionError``)."""
        await self.engine.read(
            partial(check_selection, apps=apps, node=node, field=field, indexed=indexed)
        )

    async def count(self, app: App, node: t.Node) -> int:
        """How many devices of ``app`` the selection picks (subscribed or not)."""
        return await self.engine.read(partial(count, app=app, node=node))

    async def select_ids(
        self, app: App, node: t.Node, after: int = 0, limit: int = 1000
    ) -> list[int]:
        return await self.engine.read(
            partial(select_ids, app=app, node=node, after=after, limit=limit)
        )

    async def select_hwids(self, app: App, node: t.Node) -> list[str]:
        return await self.engine.read(partial(select_hwids, app=app, node=node))

    # saved filters
    async def create_filter(
        self,
        account: str,
        name: str,
        node: t.Node,
        *,
        app: App | None = None,
        conditions: list[Any] | None = None,
        operator: str | None = None,
    ) -> SavedFilter:
        return await self.engine.write(
            partial(
                create_filter,
                account=account,
                name=name,
                node=node,
                app=app,
                conditions=conditions,
                operator=operator,
            )
        )

    async def get_filter(self, account: str, name: str) -> SavedFilter | None:
        return await self.engine.read(partial(get_filter, account=account, name=name))

    async def list_filters(self, account: str) -> list[SavedFilter]:
        return await self.engine.read(partial(list_filters, account=account))

    async def delete_filter(self, account: str, name: str) -> bool:
        return await self.engine.write(partial(delete_filter, account=account, name=name))
