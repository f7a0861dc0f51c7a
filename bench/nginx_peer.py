"""A fast APNs-shaped HTTP/2 peer: nginx with TLS and HTTP/2 on loopback.

The local Python APNs server checks every request the way Apple does, which is
what the protocol tests need, but it answers a few thousand requests a second at
most: a client faster than that is measured against the server, not itself.
nginx answers ``POST /3/device/<token>`` as APNs does, without the checks:

- ``200`` with an ``apns-id`` header and no body;
- ``400 {"reason":"BadDeviceToken"}`` for tokens ending in ``e``;
- ``410 {"reason":"Unregistered","timestamp":<ms>}`` for tokens ending in ``f``.

Debian's ``nginx`` is installed with apt-get when missing (as root); ``h2load``
(Debian ``nghttp2-client``) likewise, as the baseline client.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Of the bench's device tokens (``{i:064x}``), those ending in these answer 400 / 410.
BAD_SUFFIX = "e"
GONE_SUFFIX = "f"
NGINX = "/usr/sbin/nginx"

_CONF = """\
worker_processes {workers};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/json;
    keepalive_requests 100000000;
    keepalive_timeout 3600s;
    http2_max_concurrent_streams 1000;
    map $msec $apns_timestamp {{ "~^(?<s>[0-9]+)\\.(?<ms>[0-9]+)$" "$s$ms"; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location ~ "^/3/device/[0-9a-fA-F]*{bad}$" {{
            add_header apns-id $request_id always;
            return 400 '{{"reason":"BadDeviceToken"}}';
        }}
        location ~ "^/3/device/[0-9a-fA-F]*{gone}$" {{
            add_header apns-id $request_id always;
            return 410 '{{"reason":"Unregistered","timestamp":$apns_timestamp}}';
        }}
        location /3/device/ {{
            add_header apns-id $request_id always;
            return 200;
        }}
    }}
}}
"""


def apt_install(binary: str, package: str) -> str | None:
    """``binary``'s path, installing Debian's ``package`` first when it is missing; None if not."""
    found = shutil.which(binary) or (binary if os.path.exists(binary) else None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        try:
            subprocess.run(argv, env=env, capture_output=True, timeout=600, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which(binary) or (binary if os.path.exists(binary) else None)


@dataclass
class NginxPeer:
    url: str
    port: int
    ca_file: str
    pid: int


@contextlib.contextmanager
def nginx_peer(port: int, workers: int = 1) -> Iterator[NginxPeer | None]:
    """nginx answering like APNs on ``port``; None when nginx cannot be had on this machine."""
    from tests.gateways import LocalTLS

    nginx = apt_install(NGINX, "nginx")
    if nginx is None:
        yield None
        return
    with LocalTLS() as tls, tempfile.TemporaryDirectory(prefix="pushtrack-nginx-") as prefix:
        cert, key = Path(prefix, "cert.pem"), Path(prefix, "key.pem")
        tls.write_server_files(str(cert), str(key))
        conf = Path(prefix, "nginx.conf")
        conf.write_text(
            _CONF.format(
                workers=workers,
                prefix=prefix,
                port=port,
                cert=cert,
                key=key,
                bad=BAD_SUFFIX,
                gone=GONE_SUFFIX,
            )
        )
        proc = subprocess.Popen(
            [nginx, "-p", prefix, "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_port(proc, port, Path(prefix, "error.log"))
            yield NginxPeer(f"https://127.0.0.1:{port}", port, tls.ca_file, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"nginx exited at start: {error[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} within 20s")


def h2load(
    url: str, *, requests: int, connections: int, streams: int, headers: dict[str, str], body: bytes
) -> float | None:
    """Requests/s of ``h2load`` POSTing ``body`` to ``url``; None when h2load cannot be had."""
    binary = apt_install("h2load", "nghttp2-client")
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".json") as data:
        data.write(body)
        data.flush()
        argv = [
            binary,
            "-n",
            str(requests),
            "-c",
            str(connections),
            "-m",
            str(streams),
            "-d",
            data.name,
        ]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=600, check=False)
    for line in out.stdout.splitlines():
        # "finished in 1.03s, 97087.38 req/s, 5.37MB/s"
        if line.startswith("finished in") and "req/s" in line:
            return float(line.split(",")[1].split()[0])
    raise RuntimeError(f"h2load gave no figure: {out.stdout[-1500:]} {out.stderr[-500:]}")
