"""Tags, tag definitions, saved filters, and the selection compiler.

``audience_where(tx, app, node)`` compiles a selection tree
(``domain/targeting.py``) into a SQL boolean expression over ``devices d``
for the devices of one application.
"""

from __future__ import annotations

from typing import Any

from pushtrack.domain.targeting import Node
from pushtrack.store.base import App, Tx


def audience_where(tx: Tx, app: App, node: Node) -> tuple[str, list[Any]]:
    """A boolean SQL expression over ``devices d`` (with its parameters) that holds
    for the devices of ``app`` that ``node`` selects.

    The caller adds ``d.app_id = ?`` (and anything else, e.g. ``d.subscribed = 1``);
    the expression is evaluated row by row with index probes into the tag values.
    """
    raise NotImplementedError
