"""The ``pushtrack`` command line.

``root.py`` is the ``pushtrack`` command itself: it assembles the commands each
module defines (``serve.py``: serve, worker, demo; ``apps.py``, ``gateways.py``,
``devices.py``: the ``app`` group; ``tokens.py``; ``exports.py``: export, stats,
purge; ``doctor.py``; ``secrets.py``; ``webhooks.py``: webhook, tail).
``common.py`` holds what they share: options, settings, opening the store,
output. No command module imports another, nor ``root.py``.
"""

from __future__ import annotations


def main() -> None:
    """The console script (pyproject.toml ``[project.scripts]``)."""
    from pushtrack.cli.root import cli

    cli()
