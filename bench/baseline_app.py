"""The baseline server: a trivial route on the same stack as ``pushtrack serve``.

Starlette behind uvicorn with the settings ``pushtrack.server`` uses, answering
every JSON 1.3 call with the OK envelope after reading its body. What the real
server adds beyond this is the cost of pushtrack itself.

    python -m bench.baseline_app --port 8089
"""

from __future__ import annotations

import argparse

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pushtrack.server import run_loop

_OK = msgspec.json.encode({"status_code": 200, "status_message": "OK", "response": None})


async def trivial(request: Request) -> Response:
    await request.body()
    return Response(_OK, media_type="application/json")


def build() -> Starlette:
    return Starlette(routes=[Route("/json/1.3/{method}", trivial, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn.Config, served the same way (pushtrack.server.run_loop), as
    # pushtrack serve.
    config = uvicorn.Config(
        build(), host="127.0.0.1", port=args.port, access_log=False, log_level="info", lifespan="on"
    )
    run_loop(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
