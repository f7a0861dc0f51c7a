"""Running the service: the store, the HTTP server, the worker, first-start set-up."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn

from pushtrack import logs
from pushtrack.api import auth
from pushtrack.api.app import create_app
from pushtrack.api.context import Context
from pushtrack.api.protocol import server_config
from pushtrack.config import Settings
from pushtrack.demo import run as populate_demo
from pushtrack.domain import codes
from pushtrack.domain.platforms import Platform
from pushtrack.store import Store, open_store
from pushtrack.worker import build_worker

log = logging.getLogger("pushtrack")

Announce = Callable[[dict[str, Any], str], None]
T = TypeVar("T")

#: The demo application sends through the sandbox on these platforms.
DEMO_PLATFORMS = (
    Platform.IOS,
    Platform.ANDROID,
    Platform.CHROME,
    Platform.FIREFOX,
    Platform.SAFARI,
)
DEMO_SANDBOX = {"failure_rate": 0.05, "retry_rate": 0.05, "latency_ms": 20}


async def ensure_demo(store: Store) -> dict[str, Any] | None:
    """On a SQLite store that has no account yet, create the demo application and its
    tokens; anywhere else, nothing (a production database never gets unrestricted
    tokens printed into a service log)."""
    if not store.url.startswith("sqlite:") or await store.has_accounts():
        return None
    return await create_demo(store)


async def create_demo(store: Store) -> dict[str, Any]:
    """A demo application sending through the sandbox, and a server and a device token."""
    app = await store.create_app("default", "demo")
    for platform in DEMO_PLATFORMS:
        await store.dispatch.set_gateway(
            "default", app.code, int(platform), "sandbox", DEMO_SANDBOX
        )
    tokens = {}
    for kind in auth.KINDS:
        raw = codes.secret_token()
        await store.create_token(
            "default", kind, auth.hash_token(raw), auth.prefix_of(raw), None, None
        )
        tokens[kind] = raw
    return {
        "application": app.code,
        "server_token": tokens["server"],
        "device_token": tokens["device"],
    }


def _logging(settings: Settings) -> None:
    logs.configure(settings.log_format)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop (installed with uvicorn[standard]) when there is one."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the pinned install has it
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_server(settings: Settings, announce: Announce, *, demo: bool = False) -> None:
    """Serve; with ``demo`` (``make run``), a first start on an empty SQLite database
    creates the demo application and prints its tokens once."""
    _logging(settings)
    run_loop(_serve(settings, announce, demo))


class ListenError(Exception):
    """The address cannot be listened on (in use, not ours, not permitted)."""


#: Connections the kernel queues before the server accepts them (uvicorn's default).
BACKLOG = 2048


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, before anything claims to be listening: a
    client told so may connect at once (its connection waits in the backlog until the
    server accepts it; a socket only bound would refuse it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        hint = " (another process is listening there; choose another --port)"
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            + (hint if exc.errno == errno.EADDRINUSE else "")
        ) from exc
    return sock


async def _serve(settings: Settings, announce: Announce, with_demo: bool) -> None:
    sock = listen(settings.host, settings.port)
    try:
        await _serve_on(sock, settings, announce, with_demo)
    finally:
        sock.close()


async def _serve_on(
    sock: socket.socket, settings: Settings, announce: Announce, with_demo: bool
) -> None:
    store = open_store(settings.database)
    try:
        demo = await ensure_demo(store) if with_demo else None
        if demo:
            announce(
                demo,
                "First start: created a demo application (sending through the sandbox).\n"
                f"  application:  {demo['application']}\n"
                f"  server token: {demo['server_token']}\n"
                f"  device token: {demo['device_token']}\n"
                "Tokens are shown once; create more with `pushtrack token create`.",
            )
        ctx = Context.build(settings, store)
        populating = None
        if demo:
            # simulated devices and messages, so the dashboard shows the product working
            populating = asyncio.create_task(
                populate_demo(ctx, demo["application"], demo["server_token"])
            )
        config = server_config(create_app(ctx), settings)
        server = uvicorn.Server(config)
        ctx.stopping = lambda: server.should_exit
        stop = asyncio.Event()
        worker_task = None
        if settings.worker:
            task = worker_task = asyncio.create_task(build_worker(settings, store).run(stop))
            ctx.worker_alive = lambda: not task.done()
        where = {"listening": settings.base_url(), "database": settings.redacted()["database"]}
        announce(
            where, f"pushtrack listening on {where['listening']} (database {where['database']})"
        )
        try:
            await server.serve(sockets=[sock])  # returns on SIGINT/SIGTERM
        finally:
            stop.set()
            if populating is not None:
                populating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await populating
            if worker_task is not None:
                await worker_task
    finally:
        await store.close()


def run_worker(settings: Settings, announce: Announce) -> None:
    _logging(settings)
    run_loop(_work(settings, announce))


async def _work(settings: Settings, announce: Announce) -> None:
    store = open_store(settings.database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        worker = build_worker(settings, store)
        announce({"worker": worker.owner}, f"pushtrack worker {worker.owner} running")
        await worker.run(stop)
    finally:
        await store.close()
