"""Test support: a real pushtrack server on a real database, driven over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from pushtrack import config
from pushtrack.api import auth
from pushtrack.api.app import create_app
from pushtrack.api.context import CACHE_SECONDS, Context
from pushtrack.api.protocol import server_config
from pushtrack.domain import codes
from pushtrack.store import Store, open_store
from pushtrack.store.base import App

#: Server methods whose request names no application.
NO_APPLICATION = frozenset({"deleteMessage", "getResults", "getMsgStats"})

TABLES = (
    "accounts",
    "applications",
    "api_tokens",
    "devices",
    "messages",
    "payloads",
    "deliveries",
    "events",
    "counters",
    "jobs",
    "device_events",
    "tag_defs",
    "tag_values",
    "saved_filters",
)


#: The secret key of every PostgreSQL service the tests start (``secret_env`` gives it to
#: their processes), for what is stored sealed: webhook secrets (``sealing.py``). A SQLite
#: service makes its key file beside the database, as ``pushtrack serve`` does.
PG_SECRET_KEY = "L9kFQeA21KxaJ3AYg_bzo3AjVHkJD_X7f1w7WfEROjg="


def secret_env(database_url: str) -> dict[str, str]:
    """What a ``pushtrack`` process of the service over ``database_url`` needs in its
    environment to open what the service sealed."""
    return {} if database_url.startswith("sqlite:") else {"PUSHTRACK_SECRET_KEY": PG_SECRET_KEY}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(coro: Any) -> Any:
    """Run a store coroutine from test code (the store is not tied to any loop)."""
    return asyncio.run(coro)


def json_value(value: Any) -> Any:
    """A JSON column as Python: SQLite keeps JSON as text, PostgreSQL may decode it."""
    return json.loads(value) if isinstance(value, str | bytes) else value


class Database:
    """Raw access to the database behind a store, for checking what was written."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:"):
            path = self.url.removeprefix("sqlite://").removeprefix("/")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str) -> None:
        if self.url.startswith("sqlite:"):
            path = self.url.removeprefix("sqlite://").removeprefix("/")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.executescript(sql)
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT COUNT(*) FROM {table}")[0][0])

    def trail(self) -> int:
        """Entries of the trail: the events, and each delivery's ``created`` (its row)."""
        return self.count("events") + self.count_where("deliveries", "created_at IS NOT NULL")

    def count_where(self, table: str, condition: str) -> int:
        return int(self.rows(f"SELECT COUNT(*) FROM {table} WHERE {condition}")[0][0])

    def counts(self) -> dict[str, int]:
        """Row counts of every table, read in one query (one consistent snapshot)."""
        sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in TABLES)
        return {t: int(n) for t, n in zip(TABLES, self.rows(sql)[0], strict=True)}


def server_secret(db: Database) -> bytes:
    """The secret tracking codes and shown message ids are derived under."""
    ((secret,),) = db.rows("SELECT value FROM server_secrets WHERE name = 'tracking'")
    return bytes.fromhex(secret)


def delivery_id(db: Database, tracking_code: str) -> int:
    """The delivery id a tracking code seals, opened with the database's server secret."""
    found = codes.tracking_delivery(server_secret(db), tracking_code)
    assert found is not None, tracking_code
    return found


@dataclass
class Service:
    """A running server plus what a test needs to talk to it."""

    url: str
    store: Store
    db: Database
    app: App
    server_token: str
    device_token: str
    http: httpx.Client
    extra: dict[str, Any] = field(default_factory=dict)
    #: The account this view's application and tokens belong to.
    account: str = "default"
    #: The settings the server runs with.
    settings: config.Settings | None = None

    def call(self, method: str, request: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.http.post(f"/json/1.3/{method}", json={"request": request}, **kw)

    def server(self, method: str, **fields: Any) -> dict[str, Any]:
        """A server method call with this service's token; returns the envelope.

        Methods that address an application get this view's unless ``application``
        is given (``application=None`` leaves it out).
        """
        body: dict[str, Any] = {"auth": self.server_token}
        if method not in NO_APPLICATION:
            body["application"] = self.app.code
        body.update(fields)
        body = {k: v for k, v in body.items() if v is not None or k != "application"}
        resp = self.call(method, body)
        return resp.json()  # type: ignore[no-any-return]

    def device(self, method: str, **fields: Any) -> dict[str, Any]:
        body = {"application": self.app.code, **fields}
        resp = self.call(method, body, headers={"Authorization": f"Token {self.device_token}"})
        return resp.json()  # type: ignore[no-any-return]

    def v2(self, method: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        return self.http.post(
            f"/api/v2/{method}",
            json=body,
            headers={"Authorization": f"Token {token or self.server_token}"},
        )

    def send(self, **notification: Any) -> dict[str, Any]:
        """createMessage with one notification; asserts success, returns ``response``.

        An audience message (no ``devices``) is then expanded, as a worker would.
        """
        notification.setdefault("content", "hello")
        out = self.server("createMessage", notifications=[notification])
        assert out["status_code"] == 200, out
        if "devices" not in notification:
            self.expand()
        return out["response"]  # type: ignore[no-any-return]

    def expand(self, max_seconds: float = 60) -> None:
        """Run the audience expansion jobs (and only those) until none is due."""
        from pushtrack.jobs import expansion
        from pushtrack.jobs.runner import Worker

        assert self.settings is not None
        handlers = {expansion.KIND: expansion.handler(self.settings, self.store)}
        worker = Worker(self.store, handlers, poll_seconds=0.01)
        run(worker.run_until_idle(max_seconds, horizon=0))

    def hash_of(self, tracking_code: str) -> str:
        """The ``p`` value of a delivery (what the device would find in its payload)."""
        did = delivery_id(self.db, tracking_code)
        rows = self.db.rows("SELECT hash FROM deliveries WHERE id = ?", (did,))
        return str(rows[0][0])

    def hashes(self) -> dict[str, str]:
        """Every delivery's ``p`` value by its tracking code."""
        ((secret,),) = self.db.rows("SELECT value FROM server_secrets WHERE name = 'tracking'")
        key = bytes.fromhex(secret)
        return {
            codes.tracking_code(key, did): p
            for did, p in self.db.rows("SELECT id, hash FROM deliveries")
        }

    def register(self, hwid: str, device_type: int = 1, **fields: Any) -> None:
        fields.setdefault("push_token", f"token-{hwid}")
        out = self.device("registerDevice", hwid=hwid, device_type=device_type, **fields)
        assert out["status_code"] == 200, out

    def make_token(
        self,
        kind: str = "server",
        apps: list[str] | None = None,
        methods: list[str] | None = None,
        account: str | None = None,
    ) -> str:
        raw = codes.secret_token()
        run(
            self.store.create_token(
                account or self.account,
                kind,
                auth.hash_token(raw),
                auth.prefix_of(raw),
                apps,
                methods,
            )
        )
        return raw

    def new_app(self, name: str = "other", **app_settings: Any) -> App:
        """Another application in this view's account."""
        app: App = run(self.store.create_app(self.account, name, **app_settings))
        return app

    def fresh_account(self, **app_settings: Any) -> Service:
        """A view of this running service on a new account with its own application and
        tokens: tests sharing one server and database cannot see each other's data."""
        account = f"acct-{uuid.uuid4().hex[:12]}"
        app = run(self.store.create_app(account, "test app", **app_settings))
        view = replace(self, app=app, account=account)
        view.server_token = view.make_token("server")
        view.device_token = view.make_token("device")
        return view

    def log(self, **filters: Any) -> list[dict[str, Any]]:
        """Every getMessageLog row matching the filters, walking all pages."""
        rows: list[dict[str, Any]] = []
        token = None
        while True:
            body = dict(filters)
            if token:
                body["pagination_token"] = token
            resp = self.v2("statistics/getMessageLog", body)
            assert resp.status_code == 200, resp.text
            page = resp.json()
            rows.extend(page["data"])
            token = page["pagination_token"]
            if not token:
                return rows


class ServerThread:
    """uvicorn serving an app in a background thread, on an ephemeral port."""

    def __init__(self, app: Any, settings: config.Settings | None = None) -> None:
        self.port = free_port()
        cfg = server_config(
            app,
            settings or config.Settings(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def shared_service(engine: str, tmp_path: Path, template: str | None = None) -> Iterator[Service]:
    """One running service on a fresh database of ``engine`` (on PostgreSQL a copy of
    ``template``, a migrated database, when given), to share among a module's tests (each
    takes its own ``Service.fresh_account()`` view of it)."""
    from tests.conftest import fresh_database_url

    urls = fresh_database_url(engine, tmp_path, template)
    try:
        with service(next(urls)) as svc:
            yield svc
    finally:
        urls.close()


@contextlib.contextmanager
def service(
    database_url: str,
    *,
    store: Store | None = None,
    cache_seconds: float = CACHE_SECONDS,
    **settings: Any,
) -> Iterator[Service]:
    """A live server over ``database_url`` (or over an already open ``store`` of it);
    ``cache_seconds`` is how long the API reuses a looked-up token or application."""
    store = store or open_store(database_url)
    try:
        app = run(store.create_app("default", "test app"))
        if not database_url.startswith("sqlite:"):
            settings.setdefault("secret_key", PG_SECRET_KEY)
        cfg = config.load({"database": database_url, **settings}, env={})
        ctx = Context.build(cfg, store, cache_seconds=cache_seconds)
        with (
            ServerThread(create_app(ctx), cfg) as srv,
            httpx.Client(base_url=srv.url, timeout=30) as http,
        ):
            svc = Service(
                url=srv.url,
                store=store,
                db=Database(database_url),
                app=app,
                server_token="",
                device_token="",
                http=http,
                settings=cfg,
            )
            svc.server_token = svc.make_token("server")
            svc.device_token = svc.make_token("device")
            yield svc
    finally:
        run(store.close())


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount`` (made here) for the block: a small disk
    a test can fill up (root only, as on the machines the suite runs on)."""
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        mount.rmdir()
        pytest.fail(f"this test needs to mount a tmpfs (run as root): {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


def fill_disk(path: Path) -> None:
    """Take every free byte of the file system ``path`` is on."""
    with open(path, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def rss_kb(pid: int) -> int:
    """A process' resident memory, in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
