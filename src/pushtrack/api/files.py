"""Downloads of export files: ``GET``/``HEAD /files/<id>.zip``, with byte ranges.

The id is the only credential (192 random bits, see ``jobs/tracklog.py``), as
Pushwoosh's own download links; a link stops working when its file expires.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from pushtrack.api import envelope
from pushtrack.api.context import Context
from pushtrack.store.base import StoreUnavailableError

_NAME = re.compile(r"^([A-Za-z0-9_-]{16,64})\.zip$")


def _not_found() -> Response:
    return JSONResponse({"error": "file not found or expired"}, status_code=404)


def endpoint(ctx: Context) -> Callable[[Request], Awaitable[Response]]:
    async def download(request: Request) -> Response:
        match = _NAME.match(request.path_params["name"])
        if match is None:
            return _not_found()
        try:
            record = await ctx.store.exports.get_file(match.group(1))
        except StoreUnavailableError as exc:
            fault = envelope.unavailable(exc)
            return JSONResponse(
                {"error": fault.message},
                status_code=fault.http_status,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if record is None or record.expires_at <= ctx.store_clock():
            return _not_found()
        try:
            stat = await asyncio.to_thread(os.stat, record.path)
        except OSError:  # removed from disk (retention on another host, an operator)
            return _not_found()
        # FileResponse answers HEAD and Range (206, 416) itself.
        return FileResponse(
            record.path,
            media_type="application/zip",
            filename=record.name,
            stat_result=stat,
            headers={"cache-control": "private, no-store"},
        )

    return download
