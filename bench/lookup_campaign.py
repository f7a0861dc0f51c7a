"""lookup-campaign: getMessageLog by campaign_code over the lookup trail (see ``bench.lookup``)."""

from __future__ import annotations

from bench.harness import Bench, Figure
from bench.lookup import run_campaign

NAME = "lookup-campaign"


def run(bench: Bench) -> Figure:
    return run_campaign(bench)
