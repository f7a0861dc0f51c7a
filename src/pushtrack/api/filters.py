"""Saved filters (createFilter, listFilters, deleteFilter) and turning targeting
fields into a checked selection for the message methods.

A saved filter is stored and listed in Pushwoosh's filter language. It is
made from ``conditions`` (with ``operator`` AND | OR, and optionally an
``application`` it belongs to), as Pushwoosh's createFilter takes them, or
**(ours)** from a ``filter_expression`` in the filter language.

Helpers for the message methods: ``conditions_selection`` (createMessage's
``conditions`` and ``conditions_operator``), ``saved_selection`` (its
``filter``), ``devices_filter_selection`` (createTargetedMessage's
``devices_filter``). Each answers a checked selection tree or a 210 naming
the field and the condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from pushtrack.api import auth
from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain import targeting as t
from pushtrack.store.base import App
from pushtrack.store.targeting import SelectionError, TagError

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
FilterName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Conditions = Annotated[list[list[Any]], msgspec.Meta(min_length=1, max_length=t.MAX_TERMS)]
Expression = Annotated[str, msgspec.Meta(min_length=1, max_length=t.MAX_FILTER_LENGTH)]


class CreateFilter(msgspec.Struct, forbid_unknown_fields=True):
    name: FilterName
    conditions: Conditions | None = None
    operator: str | None = None
    application: Text | None = None
    #: (ours) the selection in the filter language instead of ``conditions``.
    filter_expression: Expression | None = None


class ListFilters(msgspec.Struct, forbid_unknown_fields=True):
    #: (ours) only filters of this application (and those of no application).
    application: Text | None = None


class DeleteFilter(msgspec.Struct, forbid_unknown_fields=True):
    name: FilterName


# -- turning targeting fields into selections ------------------------------------------------


async def _visible_apps(call: Call) -> list[App]:
    """The account's applications that the caller's token may use."""
    assert call.token is not None
    apps = await call.ctx.store.list_apps(call.token.account)
    if call.token.apps is not None:
        apps = [a for a in apps if a.code in call.token.apps]
    return apps


async def _check(call: Call, apps: Sequence[App], node: t.Node, field: str, indexed: bool) -> None:
    try:
        await call.ctx.store.targeting.check(apps, node, field=field, indexed=indexed)
    except SelectionError as exc:
        raise ArgumentError(exc.message) from None


def parse_conditions(
    conditions: Any,
    operator: str | None,
    *,
    field: str = "conditions",
    operator_field: str = "conditions_operator",
) -> t.Node:
    """Conditions as a tree (210 naming the condition if one is malformed)."""
    try:
        return t.from_conditions(conditions, operator, field=field, operator_field=operator_field)
    except t.TargetingError as exc:
        raise ArgumentError(exc.message) from None


def parse_expression(text: str, field: str) -> t.Node:
    """Filter-language text as a tree: 210 ``<field>: syntax error at column N: ...``."""
    try:
        return t.parse_filter(text)
    except t.TargetingError as exc:
        raise ArgumentError(f"{field}: {exc.message}") from None


async def conditions_selection(
    call: Call,
    app: App,
    conditions: Any,
    operator: str | None = None,
    *,
    field: str = "conditions",
    operator_field: str = "conditions_operator",
) -> t.Node:
    """createMessage's ``conditions``: parsed and checked against ``app``'s tags.

    210 ``conditions[1]: tag "level" is not defined`` and the like.
    """
    node = parse_conditions(conditions, operator, field=field, operator_field=operator_field)
    await _check(call, [app], node, field, indexed=True)
    return node


async def saved_selection(call: Call, app: App, name: str, *, field: str = "filter") -> t.Node:
    """createMessage's ``filter``: the saved filter named ``name``, checked for ``app``."""
    assert call.token is not None
    saved = await call.ctx.store.targeting.get_filter(call.token.account, name)
    allowed = call.token.apps
    if saved is None or (
        # another application's filter reads as no filter to a token restricted from it
        allowed is not None and saved.application is not None and saved.application not in allowed
    ):
        raise ArgumentError(f'{field}: no filter named "{name}"')
    if saved.application is not None and saved.application != app.code:
        raise ArgumentError(f'{field}: filter "{name}" belongs to application {saved.application}')
    await _check(call, [app], saved.selection, field, indexed=False)
    return saved.selection


async def devices_filter_selection(
    call: Call, text: str, *, field: str = "devices_filter"
) -> tuple[t.Node, list[App]]:
    """createTargetedMessage's ``devices_filter``: the tree and the applications it names.

    Every application named (``A``/``AT``) must be one the caller may use; at
    least one must be named; tag conditions are checked against their tags.
    """
    node = parse_expression(text, field)
    codes = t.applications(node)
    if not codes:
        raise ArgumentError(f'{field}: name an application with A("APP-CODE")')
    apps = [await _app_in_expression(call, code, field) for code in codes]
    await _check(call, apps, node, field, indexed=False)
    return node, apps


async def _app_in_expression(call: Call, code: str, field: str) -> App:
    if call.token is not None:
        auth.check_app_code(call.token, code)  # before the lookup: existence stays hidden
    app = await call.ctx.app(code)
    if app is None or call.token is None or app.account != call.token.account:
        raise ArgumentError(f"{field}: application {code} not found")
    return app


# -- saved filters ---------------------------------------------------------------------------


async def create_filter(call: Call, r: CreateFilter) -> dict[str, Any]:
    assert call.token is not None
    app = await call.app_for(r.application) if r.application is not None else None
    if r.filter_expression is not None:
        if r.conditions is not None:
            raise ArgumentError("filter_expression: give conditions or filter_expression, not both")
        if r.operator is not None:
            raise ArgumentError("operator: goes with conditions, not with filter_expression")
        node = parse_expression(r.filter_expression, "filter_expression")
        named = [
            await _app_in_expression(call, code, "filter_expression")
            for code in t.applications(node)
        ]
        apps = named or ([app] if app else await _visible_apps(call))
        if app is not None and app.code not in {a.code for a in apps}:
            apps = [*apps, app]
        await _check(call, apps, node, "filter_expression", indexed=False)
    elif r.conditions is not None:
        node = parse_conditions(r.conditions, r.operator, operator_field="operator")
        apps = [app] if app else await _visible_apps(call)
        await _check(call, apps, node, "conditions", indexed=True)
    else:
        raise ArgumentError("conditions: required (or filter_expression)")
    try:
        saved = await call.ctx.store.targeting.create_filter(
            call.token.account,
            r.name,
            node,
            app=app,
            conditions=r.conditions,
            operator=(r.operator or "AND").upper() if r.conditions is not None else None,
        )
    except TagError as exc:
        raise ArgumentError(exc.message) from None
    return {"name": saved.name, "expression": saved.expression}


async def list_filters(call: Call, r: ListFilters) -> dict[str, Any]:
    assert call.token is not None
    only = (await call.app_for(r.application)).code if r.application is not None else None
    found = await call.ctx.store.targeting.list_filters(call.token.account)
    allowed = call.token.apps
    return {
        "filters": [
            {
                "name": f.name,
                "expression": f.expression,
                "conditions": f.conditions,
                "operator": f.operator,
                "application": f.application,
            }
            for f in found
            if (f.application is None or allowed is None or f.application in allowed)
            and (only is None or f.application in (None, only))
        ]
    }


async def delete_filter(call: Call, r: DeleteFilter) -> None:
    assert call.token is not None
    saved = await call.ctx.store.targeting.get_filter(call.token.account, r.name)
    allowed = call.token.apps
    hidden = saved is not None and saved.application is not None and allowed is not None
    if saved is None or (hidden and saved.application not in (allowed or ())):
        # another application's filter reads as no filter to a restricted token
        raise ArgumentError(f'name: no filter named "{r.name}"')
    await call.ctx.store.targeting.delete_filter(call.token.account, r.name)
