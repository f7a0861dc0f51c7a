"""Fixtures of the dashboard tests: one running service per engine, shared by a module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ENGINES, template_of
from tests.dashboard._support import OPEN
from tests.support import Service, shared_service


@pytest.fixture(scope="module", params=ENGINES)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    path = Path(tmp_path_factory.mktemp(name))
    with shared_service(request.param, path, template_of(request)) as s:
        yield s


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()
