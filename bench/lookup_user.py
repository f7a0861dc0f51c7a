"""lookup-user: getMessageLog by user_id over the lookup trail (see ``bench.lookup``)."""

from __future__ import annotations

from bench.harness import Bench, Figure
from bench.lookup import run_user

NAME = "lookup-user"


def run(bench: Bench) -> Figure:
    return run_user(bench)
