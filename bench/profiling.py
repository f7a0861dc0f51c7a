"""Sampling the process under test with py-spy while a workload runs.

``python -m bench --profile`` (the default for full runs when py-spy is
installed: ``pip install -e '.[bench]'``) attaches py-spy to the server or
worker in non-blocking mode, so the target is never paused, and summarizes
where its busy samples fell: by the innermost Python function (self) and by
every pushtrack function on the stack (inclusive).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.harness import Bench
from bench.procs import BIN

RATE = 97  # samples per second (prime, so it does not beat against periodic work)
TOP = 6
#: The frames every sample of the main thread starts with: no news in a profile.
ENTRY_POINTS = (
    "(pushtrack/cli/__init__.py)",
    "(pushtrack/cli/serve.py)",
    "(pushtrack/server.py)",
)
#: Innermost frames that mean a thread is waiting, not working (py-spy's idle
#: detection misses some of them when it does not pause the target).
IDLE = (
    "EpollSelector.select (selectors.py)",
    "_worker (concurrent/futures/thread.py)",
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    # the SQLite writer's own frame is innermost only while it waits on its queue
    # (SimpleQueue.get runs in C); its work runs in SQLiteEngine._commit_group
    "SQLiteEngine._write_loop (pushtrack/store/sqlite.py)",
)


def py_spy() -> str | None:
    local = BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profile:
    """Sample ``pid`` from ``start()`` until ``stop()``; ``summary`` then holds the top frames."""

    def __init__(self, bench: Bench, pid: int, name: str) -> None:
        self.enabled = bench.profile and py_spy() is not None
        self.out = bench.tmp / f"profile-{name}.txt"
        self.name = name
        self.pid = pid
        self.summary: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Profile:
        exe = py_spy()
        if self.enabled and exe is not None:
            argv = [exe, "record", "--pid", str(self.pid), "--rate", str(RATE), "--nonblocking"]
            argv += ["--format", "raw", "--output", str(self.out)]
            self._proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        return self

    def stop(self) -> list[str]:
        if self._proc is None:
            return self.summary
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        if self.out.exists():
            self.summary = summarize(self.out, self.name)
        return self.summary

    def __enter__(self) -> Profile:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _frame(text: str) -> str:
    """``fn (/long/path/pkg/mod.py:12)`` → ``fn (pkg/mod.py)``."""
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    if not Path(path).is_absolute():
        pass  # py-spy names a module's file from its package: pushtrack/store/sqlite.py
    elif "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "src" in parts:
        parts = parts[parts.index("src") + 1 :]
    else:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts)})"


def summarize(path: Path, name: str) -> list[str]:
    """Top frames of a py-spy ``raw`` (collapsed stacks) file, as report notes."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if not frames or frames[-1] in IDLE:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "pushtrack/" in frame and not frame.endswith(ENTRY_POINTS):
                inclusive[frame] += count
    if not total:
        return [f"profile of {name}: no busy samples"]

    def pct(n: int) -> str:
        return f"{100 * n / total:.0f}%"

    self_top = "; ".join(f"{pct(n)} {f}" for f, n in own.most_common(TOP))
    incl_top = "; ".join(f"{pct(n)} {f}" for f, n in inclusive.most_common(TOP))
    return [
        f"profile of {name} (py-spy, {total} busy samples at {RATE} Hz)",
        f"self time: {self_top}",
        f"inclusive (pushtrack): {incl_top}",
    ]
