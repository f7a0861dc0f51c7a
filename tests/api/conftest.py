"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ENGINES, template_of
from tests.support import Service, shared_service


@pytest.fixture(scope="module", params=ENGINES)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One server and database per engine for a test module; each test takes its own
    account of it (``Service.fresh_account``)."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    path = Path(tmp_path_factory.mktemp(name))
    with shared_service(request.param, path, template_of(request)) as s:
        yield s
