"""Probes for supervisors: ``/healthz`` (the process answers) and ``/readyz`` (it can serve).

``/health`` (kept as it was) and ``/healthz`` touch nothing. ``/readyz`` asks the
store one cheap question, within ``READY_TIMEOUT_S``: which migrations the database
has. A store that does not answer, or whose schema is not the one this code
expects, is a 503 with the problems in plain words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pushtrack.api.context import Context
from pushtrack.store.base import StoreError

#: The longest a readiness probe waits for the store.
READY_TIMEOUT_S = 5.0


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    async def probe(request: Request) -> Response:
        problems = await _problems(ctx)
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return probe


async def _problems(ctx: Context) -> list[str]:
    try:
        applied, known = await asyncio.wait_for(ctx.store.schema_versions(), READY_TIMEOUT_S)
    except TimeoutError:
        return [f"store: no answer within {READY_TIMEOUT_S:g} s"]
    except StoreError as exc:
        return [f"store: {exc}"]
    except Exception as exc:  # noqa: BLE001 - a probe reports every fault, it never raises
        return [f"store: unreachable ({type(exc).__name__})"]
    if applied != known:
        return [f"store: schema at migration {applied}, this pushtrack expects {known}"]
    return []
