"""The processes a workload drives: the real ``pushtrack`` server and worker, baselines.

Each runs as its own OS process (its own GIL), logs to a file in the run's
scratch directory, and is stopped with SIGINT then, if need be, SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.harness import Bench, cpu_seconds, proc_status

BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(bench: Bench, **extra: str) -> dict[str, str]:
    """The environment without the caller's PUSHTRACK_* settings (they would skew a run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
    env["PUSHTRACK_FILES_DIR"] = str(bench.tmp / "files")
    # the bench measures throughput: no per-application createMessage limit
    env["PUSHTRACK_MESSAGES_PER_MINUTE"] = "0"
    env.update(extra)
    return env


class Proc:
    """A child process with a log file; usable as a context manager."""

    def __init__(self, bench: Bench, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.log_path = bench.tmp / f"{name}.log"
        bench.logs.append(self.log_path)
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=bench.tmp
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def peak_rss_mb(self) -> float | None:
        kb = proc_status(self.pid, "VmHWM")
        return None if kb is None else kb / 1024

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {port} within {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def pushtrack_server(
    bench: Bench, database: str, name: str = "server"
) -> Iterator[tuple[Proc, int]]:
    """``pushtrack serve --no-worker`` on a free port, as an operator starts it."""
    port = free_port()
    argv = [
        str(BIN / "pushtrack"),
        "serve",
        "--port",
        str(port),
        "--no-worker",
        "--database",
        database,
    ]
    with Proc(bench, name, argv, clean_env(bench)) as proc:
        proc.wait_port(port)
        yield proc, port


@contextlib.contextmanager
def baseline_server(bench: Bench) -> Iterator[tuple[Proc, int]]:
    """The trivial route on the same server stack (``bench.baseline_app``)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline_app", "--port", str(port)]
    env = clean_env(bench, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with Proc(bench, "baseline-server", argv, env) as proc:
        proc.wait_port(port)
        yield proc, port


@contextlib.contextmanager
def pushtrack_worker(
    bench: Bench, database: str, concurrency: int, name: str = "worker"
) -> Iterator[Proc]:
    """``pushtrack worker``: runs the jobs (dispatch, export, retention) of ``database``."""
    argv = [
        str(BIN / "pushtrack"),
        "worker",
        "--database",
        database,
        "--concurrency",
        str(concurrency),
    ]
    with Proc(bench, name, argv, clean_env(bench)) as proc:
        yield proc


def cli(bench: Bench, *args: str, timeout: float = 120.0) -> str:
    """Run a ``pushtrack`` command; its stdout."""
    out = subprocess.run(
        [str(BIN / "pushtrack"), *args],
        capture_output=True,
        text=True,
        env=clean_env(bench),
        cwd=bench.tmp,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"pushtrack {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


@contextlib.contextmanager
def apns_peer(bench: Bench) -> Iterator[tuple[Proc, dict[str, str]]]:
    """The local APNs server in its own process; yields it and the gateway settings to reach it."""
    import json

    argv = [sys.executable, "-m", "bench.apns_peer"]
    env = clean_env(bench, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with Proc(bench, "apns-server", argv, env) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in proc.log_tail(5).splitlines():
                if line.startswith("APNS "):
                    yield proc, json.loads(line[5:])
                    return
            if proc.popen.poll() is not None:
                raise RuntimeError(f"the APNs server exited:\n{proc.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError("the APNs server did not start within 30s")
