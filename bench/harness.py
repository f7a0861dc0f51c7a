"""What every workload shares: the run's options, its figures, timing, and the report."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POSTGRES_ADMIN = os.environ.get(
    "PUSHTRACK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


class Skip(Exception):
    """A workload cannot run here (its feature or a tool is missing); the reason is reported."""


@dataclass
class Figure:
    """One workload's line of the report."""

    name: str
    value: float | None = None
    unit: str = ""
    baseline: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    peak_rss_mb: float | None = None
    sizes: dict[str, Any] = field(default_factory=dict)
    #: What the issue asks of this figure, and whether this run met it.
    target: str = ""
    target_met: bool | None = None
    notes: list[str] = field(default_factory=list)
    #: Further numbers (the baseline's own latencies, the absolute rates, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    def check(self, *conditions: tuple[str, bool]) -> None:
        """Record the target (as text) and whether every part of it was met."""
        self.target = ", ".join(text for text, _ in conditions)
        self.target_met = all(ok for _, ok in conditions)

    def complete(self) -> bool:
        """Ran and produced its numbers (what ``--quick`` checks)."""
        if self.skipped is not None:
            return True
        return self.error is None and self.value is not None and math.isfinite(self.value)

    def to_json(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"name": self.name, "skipped": self.skipped}
        out: dict[str, Any] = {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "baseline": _round(self.baseline),
            "ratio": _round(self.ratio, 3),
            "p50_ms": _round(self.p50_ms, 3),
            "p99_ms": _round(self.p99_ms, 3),
            "peak_rss_mb": _round(self.peak_rss_mb, 1),
            "sizes": self.sizes,
            "target": self.target,
            "target_met": self.target_met,
            "seconds": round(self.seconds, 1),
        }
        if self.extra:
            out["extra"] = {
                k: _round(v, 3) if isinstance(v, float) else v for k, v in self.extra.items()
            }
        if self.notes:
            out["notes"] = self.notes
        if self.error is not None:
            out["error"] = self.error
        return out


def _round(value: float | None, digits: int = 1) -> float | None:
    if value is None:
        return None
    return round(value, digits)


@dataclass
class Bench:
    """The run: its options and a scratch directory removed at the end."""

    quick: bool
    engine: str
    tmp: Path
    profile: bool
    deliveries: int | None = None
    events: int | None = None
    #: Log files of the processes started so far (shown when a workload fails).
    logs: list[Path] = field(default_factory=list)
    _databases: list[str] = field(default_factory=list)

    def size(self, full: int, quick: int, *, override: int | None = None) -> int:
        if override is not None:
            return override
        return quick if self.quick else full

    def database(self, name: str) -> str:
        """A fresh database of the run's engine; removed with the run."""
        if self.engine == "sqlite":
            return f"sqlite:///{self.tmp}/{name}.db"
        import psycopg

        db = f"ptbench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        self._databases.append(db)
        return f"{POSTGRES_ADMIN.rsplit('/', 1)[0]}/{db}"

    def cleanup(self) -> None:
        if self._databases:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as conn:
                for db in self._databases:
                    conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        shutil.rmtree(self.tmp, ignore_errors=True)


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite://").removeprefix("/")


# -- numbers ---------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; samples need not be sorted."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed:`` … ``elapsed()`` is seconds since entry (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []

    def elapsed() -> float:
        return (end[0] if end else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end.append(time.perf_counter())


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds of each of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


# -- processes -----------------------------------------------------------------------


def proc_status(pid: int, key: str) -> int | None:
    """A kB figure of /proc/PID/status (VmHWM: peak resident set)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# -- the report -------------------------------------------------------------------------


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def report(bench: Bench, figures: Sequence[Figure], argv: Sequence[str]) -> dict[str, Any]:
    return {
        "commit": commit(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "engine": bench.engine,
        "quick": bench.quick,
        "command": "python -m bench " + " ".join(argv),
        "figures": [f.to_json() for f in figures],
    }


def write_report(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def state(figure: Figure, *, quick: bool) -> str:
    """A workload's outcome in a word or two; ``quick`` runs show no values (small scale
    says nothing about the targets), only whether the numbers came."""
    if figure.skipped is not None:
        return f"skipped: {figure.skipped}"
    if not figure.complete():
        return f"no numbers: {figure.error or 'no value'}"
    if quick:
        return "produced its numbers"
    return f"{figure.value:,.1f} {figure.unit}"


def quick_summary(figures: Sequence[Figure]) -> str:
    """What ``--quick`` prints last: whether every workload produced its numbers."""
    broken = [f.name for f in figures if not f.complete()]
    skipped = [f.name for f in figures if f.skipped is not None]
    ran = len(figures) - len(skipped)
    if broken:
        return f"bench --quick: no numbers from {', '.join(broken)}"
    tail = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
    return f"bench --quick: each of {ran} workloads produced its numbers{tail}"


def table(figures: Sequence[Figure]) -> str:
    """The report as a Markdown table (printed, and pasted into the README)."""
    head = (
        "| workload | value | unit | baseline | ratio | p50 ms | p99 ms | peak RSS MB"
        " | target | met |"
    )
    lines = [head, "|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for f in figures:
        if f.skipped is not None:
            lines.append(f"| {f.name} | skipped: {f.skipped} | | | | | | | | |")
            continue
        if f.error is not None:
            first = f.error.splitlines()[0] if f.error else ""
            lines.append(f"| {f.name} | error: {first} | | | | | | | | |")
            continue
        met = {True: "yes", False: "**no**", None: "—"}[f.target_met]
        lines.append(
            f"| {f.name} | {_fmt(f.value)} | {f.unit} | {_fmt(f.baseline)} | {_fmt(f.ratio, 2)}"
            f" | {_fmt(f.p50_ms, 2)} | {_fmt(f.p99_ms, 2)} | {_fmt(f.peak_rss_mb)}"
            f" | {f.target} | {met} |"
        )
    return "\n".join(lines)
