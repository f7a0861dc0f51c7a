"""Slow and idle clients cannot hold connections or memory: read deadlines for
headers and bodies, and a port in use is reported before anything claims to listen."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, rss_kb

BODY = 4_000_000
SENT = 1_000_000
STALLED = 30


@contextlib.contextmanager
def _serve(
    tmp_path: Path, query: str = "", **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    exe = shutil.which("pushtrack", path=os.path.dirname(sys.executable))
    assert exe is not None
    proc = subprocess.Popen(
        [
            exe,
            "serve",
            "--no-worker",
            "--port",
            str(port),
            "--database",
            f"sqlite:///{tmp_path}/db{query}",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            time.sleep(0.05)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(10)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)))


def _stalled_wave(url: str) -> list[socket.socket]:
    """Connections that send nothing, half their headers, or a quarter of a body."""
    idle = _connect(url)
    half_headers = _connect(url)
    half_headers.sendall(b"POST /json/1.3/createMessage HTTP/1.1\r\nHost: x\r\n")
    bodies = []
    for _ in range(STALLED):
        s = _connect(url)
        s.sendall(
            b"POST /json/1.3/createMessage HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {BODY}\r\n\r\n".encode()
            + b" " * SENT
        )
        bodies.append(s)
    return [idle, half_headers, *bodies]


@pytest.mark.slow
def test_idle_and_half_sent_requests_are_closed_and_memory_returned(tmp_path: Path) -> None:
    with _serve(
        tmp_path,
        PUSHTRACK_HEADER_TIMEOUT_SECONDS="1",
        PUSHTRACK_BODY_TIMEOUT_SECONDS="2",
    ) as (proc, url):
        before = rss_kb(proc.pid)
        peaks = []
        for _ in range(3):
            wave = _stalled_wave(url)
            time.sleep(0.5)
            peaks.append(rss_kb(proc.pid) - before)
            # the service goes on answering others meanwhile
            assert httpx.get(f"{url}/healthz").status_code == 200
            assert all(_closed_by_server(s, 10) for s in wave), "a stalled client stayed open"
            for s in wave:
                s.close()
        assert peaks[0] > STALLED * SENT // 1024 // 2, "the partial bodies were read"
        # what one wave held was freed and reused by the next: no growth per wave
        assert peaks[2] < peaks[0] * 1.5, peaks
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_prompt_client_is_not_cut_off(tmp_path: Path) -> None:
    with _serve(tmp_path, PUSHTRACK_HEADER_TIMEOUT_SECONDS="1") as (_, url):
        with httpx.Client(base_url=url) as client:  # keep-alive: one connection
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
                time.sleep(0.6)  # idle between requests, below the keep-alive timeout
        body = b'{"request": {}}'
        s = _connect(url)
        s.sendall(
            b"POST /json/1.3/createMessage HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        time.sleep(0.5)  # the body comes a little later, within its deadline
        s.sendall(body)
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 401 ")
        s.close()


def test_serve_on_a_port_in_use_says_so_and_never_claims_to_listen(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exe = shutil.which("pushtrack", path=os.path.dirname(sys.executable))
        assert exe is not None
        out = subprocess.run(
            [exe, "serve", "--port", str(port), "--database", f"sqlite:///{tmp_path}/db"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in text
    assert "in use" in text
    assert "listening" not in text.replace("is listening there", "")
    assert not (tmp_path / "db").exists(), "nothing was started"


def test_the_socket_serve_announces_takes_connections_at_once() -> None:
    # serve says "listening" before its server starts accepting: a client that connects
    # at that instant waits in the backlog (a socket only bound would refuse it, as the
    # tests that start serve once saw under load)
    from pushtrack.server import listen

    sock = listen("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=5) as client:
            accepted, _ = sock.accept()
            client.sendall(b"x")
            assert accepted.recv(1) == b"x"
            accepted.close()
    finally:
        sock.close()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_timeouts_must_be_positive(tmp_path: Path, value: str) -> None:
    exe = shutil.which("pushtrack", path=os.path.dirname(sys.executable))
    assert exe is not None
    out = subprocess.run(
        [exe, "serve", "--database", f"sqlite:///{tmp_path}/db"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PUSHTRACK_BODY_TIMEOUT_SECONDS": value},
    )
    assert out.returncode != 0
    said = " ".join((out.stdout + out.stderr).split())
    assert f"body_timeout_seconds: expected a number > 0.0, got {float(value)}" in said


@pytest.mark.slow
def test_keepalive_timeout_closes_idle_connections(tmp_path: Path) -> None:
    with _serve(tmp_path, PUSHTRACK_KEEPALIVE_TIMEOUT_SECONDS="1") as (_, url):
        s = _connect(url)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        # idle after a response: closed by the server after about a second
        assert _closed_by_server(s, 8)
        s.close()
    with _serve(tmp_path, PUSHTRACK_KEEPALIVE_TIMEOUT_SECONDS="30") as (_, url):
        s = _connect(url)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert not _closed_by_server(s, 3)  # the same wait, a longer keep-alive
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.close()


def test_max_connections_answers_503_above_it(tmp_path: Path) -> None:
    with _serve(tmp_path, PUSHTRACK_MAX_CONNECTIONS="2") as (_, url):
        held = [_connect(url), _connect(url)]
        try:
            for s in held:  # two open connections, each with a request under way
                s.sendall(b"POST /json/1.3/createMessage HTTP/1.1\r\nHost: x\r\n")
            answers = []
            for _ in range(50):  # until the server has taken both connections in
                answers.append(httpx.get(f"{url}/healthz").status_code)
                if answers[-1] == 503:
                    break
                time.sleep(0.1)
            assert answers[-1] == 503, answers
        finally:
            for s in held:
                s.close()
        for _ in range(50):  # freed: answered again
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
            time.sleep(0.1)
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_answers_come_whole_and_at_once_on_one_connection(tmp_path: Path) -> None:
    """A response's head goes out with its body; a HEAD answer (no body follows) at once,
    so the next request on the same keep-alive connection is answered too."""
    with _serve(tmp_path) as (_, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            for method in ("HEAD", "GET", "HEAD", "GET"):
                sock.sendall(f"{method} /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                answer = b""
                while b"\r\n\r\n" not in answer or (
                    method == "GET" and not answer.rstrip().endswith(b"}")
                ):
                    chunk = sock.recv(65536)  # times out (fails) if the answer is held
                    assert chunk, "connection closed"
                    answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert b"content-length: " in head.lower()
                assert body == b"" if method == "HEAD" else body.startswith(b"{")


@pytest.mark.slow
def test_shedding_under_sustained_overload_keeps_memory_flat(tmp_path: Path) -> None:
    """Far more requests at once than ``max_in_flight`` allows, wave after wave: the
    excess is answered 503 with Retry-After at once (nothing queues up), the rest are
    done, and the process holds no more memory after the fifth wave than after the
    first."""
    import concurrent.futures
    import json

    from tests.cli.test_gateways import cli

    db = f"sqlite:///{tmp_path}/db"
    app = json.loads(cli(db, "app", "create", "shed", "--json").stdout)["code"]
    token = json.loads(cli(db, "token", "create", "--kind", "server", "--json").stdout)["token"]
    body = {
        "request": {
            "auth": token,
            "application": app,
            "notifications": [{"content": "x" * 2000, "devices": [f"d{i}" for i in range(20)]}],
        }
    }
    with (
        _serve(
            tmp_path,
            "?cache_mb=1",  # small page caches: what the database holds does not show
            PUSHTRACK_MAX_IN_FLIGHT="2",
            PUSHTRACK_MESSAGES_PER_MINUTE="0",
            PUSHTRACK_RATE_LIMIT="0",
        ) as (proc, url),
        httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64)) as client,
        concurrent.futures.ThreadPoolExecutor(48) as pool,
    ):

        def one(_: int) -> tuple[int, str | None]:
            resp = client.post("/json/1.3/createMessage", json=body)
            return resp.status_code, resp.headers.get("retry-after")

        after: list[int] = []
        for _ in range(5):
            answers = list(pool.map(one, range(240)))
            assert {status for status, _ in answers} <= {200, 503}, answers
            assert any(status == 503 for status, _ in answers), "nothing was shed"
            assert all(retry == "1" for status, retry in answers if status == 503)
            after.append(rss_kb(proc.pid))
        assert after[-1] < after[0] * 1.10, after
