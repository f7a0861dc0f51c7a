"""Storage faults answer 503 with Retry-After in the envelope, and the service
recovers by itself once the storage is back; nothing acknowledged is lost.

SQLite: the database on a small tmpfs that is then filled up (disk full); another
process holding the database's write lock past the busy timeout (locked).
PostgreSQL: the server reached through a TCP proxy that the test takes down and
brings back (an outage, as the service sees it); and a PostgreSQL cluster of the
test's own, stopped, started and restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ENGINES, fresh_database_url
from tests.support import Service, fill_disk, free_port, service, tmpfs

DEVICES = [f"fault-device-{i:04d}" for i in range(400)]


def _send(svc: Service) -> tuple[int, dict[str, object], dict[str, str]]:
    resp = svc.call(
        "createMessage",
        {
            "auth": svc.server_token,
            "application": svc.app.code,
            "notifications": [{"content": "x" * 2000, "devices": DEVICES}],
        },
    )
    return resp.status_code, resp.json(), dict(resp.headers)


def _assert_unavailable(status: int, body: dict[str, object], headers: dict[str, str]) -> None:
    assert status == 503, body
    assert body["status_code"] == 503
    assert "temporarily unavailable" in str(body["status_message"])
    assert body["response"] is None
    assert int(headers["retry-after"]) > 0


# -- SQLite: disk full ------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs is Linux")
def test_sqlite_disk_full_is_503_then_recovers(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with (
        tmpfs(tmp_path / "disk", "4m") as mount,
        service(f"sqlite:///{mount}/pushtrack.db") as svc,
    ):
        for hwid in DEVICES[:5]:
            svc.register(hwid)
        status, body, _ = _send(svc)
        assert status == 200, body
        acknowledged = [body]

        fill_disk(mount / "filler")
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="pushtrack.api"):
            answers = [_send(svc) for _ in range(6)]
        refused = [a for a in answers if a[0] != 200]
        acknowledged += [a[1] for a in answers if a[0] == 200]
        assert refused, "a full disk must refuse writes"
        for answer in refused:
            _assert_unavailable(*answer)
        assert not any(r.exc_info for r in caplog.records), "no traceback per request"
        assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) <= 1

        (mount / "filler").unlink()
        status, body, _ = _send(svc)
        assert status == 200, body
        acknowledged.append(body)

        # every acknowledged message is there, whole
        for answer in acknowledged:
            code = answer["response"]["Messages"][0]  # type: ignore[index]
            rows = svc.db.rows(
                "SELECT COUNT(*) FROM deliveries d JOIN messages m ON m.id = d.message_id "
                "WHERE m.code = ?",
                (code,),
            )
            assert rows[0][0] == len(DEVICES)


def test_sqlite_locked_by_another_process_is_503_then_recovers(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import concurrent.futures
    import sqlite3

    path = tmp_path / "pushtrack.db"
    with service(f"sqlite:///{path}") as svc:
        for hwid in DEVICES[:5]:
            svc.register(hwid)
        status, body, _ = _send(svc)
        assert status == 200, body

        # another process (an operator's sqlite3 shell, a backup tool) takes the write
        # lock and keeps it past the writer's busy timeout
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            caplog.clear()
            with (
                caplog.at_level(logging.ERROR, logger="pushtrack.api"),
                concurrent.futures.ThreadPoolExecutor(3) as pool,
            ):
                sends = [pool.submit(_send, svc) for _ in range(2)]
                device = pool.submit(
                    svc.call,
                    "registerDevice",
                    {"application": svc.app.code, "hwid": "locked-out", "device_type": 1},
                    headers={"Authorization": f"Token {svc.device_token}"},
                )
                for answer in sends:
                    _assert_unavailable(*answer.result())
                resp = device.result()
                _assert_unavailable(resp.status_code, resp.json(), dict(resp.headers))
            assert "(database busy)" in resp.json()["status_message"]
            assert not any(r.exc_info for r in caplog.records), "no traceback per request"
            lines = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(lines) <= 1, lines
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        status, body, _ = _send(svc)  # no restart: the next write goes through
        assert status == 200, body
        assert svc.db.count("messages") == 2
        assert svc.db.count_where("devices", "hwid = 'locked-out'") == 0


# -- PostgreSQL: the server goes away and comes back -------------------------------------


class Proxy:
    """A TCP proxy to PostgreSQL that can be taken down (every connection cut) and
    brought back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self._listener is not None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def short_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """While PostgreSQL is down each request waits for a connection for the store's
    checkout timeout (5 s) before it is answered 503, and the pool's reconnection
    attempts back off over the outage: 1 s here makes the same 503s come sooner and the
    outages, and so the back-off, shorter. The service runs in this process."""
    import pushtrack.store.postgres

    monkeypatch.setattr(pushtrack.store.postgres, "CHECKOUT_TIMEOUT_S", 1.0)


@pytest.mark.skipif("postgresql" not in ENGINES, reason="needs psycopg")
@pytest.mark.usefixtures("short_checkout")
def test_postgres_outage_is_503_then_recovers(pg_template: str, tmp_path: Path) -> None:
    for url in fresh_database_url("postgresql", tmp_path, pg_template):
        head, _, tail = url.rpartition("@")
        host, _, rest = tail.partition("/")
        proxy = Proxy((host.split(":")[0], int(host.split(":")[1])))
        proxy.start()
        via_proxy = f"{head}@127.0.0.1:{proxy.port}/{rest}"
        with service(via_proxy) as svc:
            for hwid in DEVICES[:5]:
                svc.register(hwid)
            status, body, _ = _send(svc)
            assert status == 200, body

            proxy.stop()
            _assert_unavailable(*_send(svc))
            read = svc.call("listTags", {"auth": svc.server_token, "application": svc.app.code})
            _assert_unavailable(read.status_code, read.json(), dict(read.headers))

            proxy.start()
            for _ in range(30):  # the pool reconnects in the background
                status, body, _ = _send(svc)
                if status == 200:
                    break
            assert status == 200, body
            assert svc.db.count("messages") == 2


# -- PostgreSQL: a cluster of the test's own, stopped and restarted --------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class Cluster:
    """A PostgreSQL cluster made for one test (initdb as the ``postgres`` user), on a
    port of its own on 127.0.0.1, that the test stops, starts and restarts."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def init(self) -> None:
        # --no-sync: the cluster is thrown away after the test (its server runs with
        # fsync=off too), so nothing initdb writes needs to reach the disk first
        self._as_postgres(
            str(self.bindir / "initdb"),
            *("-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"),
        )

    def ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-w",
            "-m",
            "fast",
            "-l",
            str(self.root / "log"),
            "-o",
            options,
        )


@contextlib.contextmanager
def _cluster() -> Iterator[Cluster]:
    bindir = _pg_bin()
    if bindir is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's server binaries and runuser")
    root = Path(tempfile.mkdtemp(prefix="pt-cluster-", dir="/tmp"))
    shutil.chown(root, "postgres")
    cluster = Cluster(bindir, root)
    try:
        cluster.init()
        cluster.ctl("start")
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            cluster.ctl("stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif("postgresql" not in ENGINES, reason="needs psycopg")
@pytest.mark.usefixtures("short_checkout")
@pytest.mark.slow
def test_postgres_cluster_stopped_and_restarted_is_503_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with _cluster() as pg, service(pg.url) as svc:
        for hwid in DEVICES[:5]:
            svc.register(hwid)
        status, body, _ = _send(svc)
        assert status == 200, body
        acknowledged = 1

        pg.ctl("stop")
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="pushtrack.api"):
            _assert_unavailable(*_send(svc))
            read = svc.v2("statistics/getMessageLog", {"hwid": DEVICES[0]})
            assert read.status_code == 503, read.text
            assert int(read.headers["retry-after"]) > 0
            device = svc.call(
                "registerDevice",
                {"application": svc.app.code, "hwid": "pg-down", "device_type": 1},
                headers={"Authorization": f"Token {svc.device_token}"},
            )
            _assert_unavailable(device.status_code, device.json(), dict(device.headers))
            assert svc.http.get("/readyz").status_code == 503
            assert svc.http.get("/healthz").status_code == 200
        assert not any(r.exc_info for r in caplog.records), "no traceback per request"
        kinds = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(kinds) <= 1, kinds  # one line for the kind, not one per request

        pg.ctl("start")
        status = 0
        for _ in range(30):  # no restart of the service: its pool reconnects
            status, body, _ = _send(svc)
            if status == 200:
                acknowledged += 1
                break
            time.sleep(0.2)
        assert status == 200, body

        # a restart while the service is idle: its pooled connections are all dead
        pg.ctl("restart")
        for _ in range(30):
            status, body, _ = _send(svc)
            if status == 200:
                acknowledged += 1
                break
            assert status == 503, body
            time.sleep(0.2)
        assert status == 200, body
        assert svc.http.get("/readyz").status_code == 200
        assert svc.db.count("messages") == acknowledged
        assert svc.db.count("deliveries") == acknowledged * len(DEVICES)


def test_wrong_postgres_url_fails_at_once_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("pushtrack", path=os.path.dirname(sys.executable))
    assert exe is not None
    out = subprocess.run(
        [exe, "serve", "--database", f"postgresql://127.0.0.1:{port}/nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert out.returncode != 0
    text = " ".join((out.stdout + out.stderr).split())
    assert "cannot open postgresql://127.0.0.1" in text
    assert "Connection refused" in text
    assert "Traceback" not in text


def test_above_max_in_flight_requests_are_shed_with_503(tmp_path: Path) -> None:
    import concurrent.futures

    import httpx

    with service(f"sqlite:///{tmp_path}/busy.db", max_in_flight=1) as svc:
        for hwid in DEVICES[:5]:
            svc.register(hwid)
        barrier = threading.Barrier(16)

        def one(_: int) -> tuple[int, dict[str, object], dict[str, str]]:
            with httpx.Client(base_url=svc.url, timeout=60) as client:
                barrier.wait()
                resp = client.post(
                    "/json/1.3/createMessage",
                    json={
                        "request": {
                            "auth": svc.server_token,
                            "application": svc.app.code,
                            "notifications": [{"content": "x", "devices": DEVICES}],
                        }
                    },
                )
                return resp.status_code, resp.json(), dict(resp.headers)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(16)))
        shed = [a for a in answers if a[0] == 503]
        done = [a for a in answers if a[0] == 200]
        assert shed, "with one request allowed at a time, some of 16 at once are shed"
        assert len(shed) + len(done) == 16
        for _, body, headers in shed:
            assert body == {
                "status_code": 503,
                "status_message": "Service temporarily unavailable (busy)",
                "response": None,
            }
            assert headers["retry-after"] == "1"
        assert svc.db.count("messages") == len(done)  # nothing shed was written
