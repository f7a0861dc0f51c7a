"""The embedded engine: one SQLite file in WAL mode.

Writes go through one writer thread per process that commits in groups: the
units of work waiting in its queue run in one transaction. Only if a unit
fails is the transaction rolled back and the group run again with a savepoint
per unit, so the failing unit rolls back alone while the others commit
together. A caller is answered only after the commit, so nothing it was told
about is lost. A batch of small writes (``write_batch``: the device reports)
finding the writer idle runs on the writer's connection in its caller's thread
instead, in its own transaction: no hand-over to the writer thread and back.
Reads run on a small pool of reader connections, which WAL lets proceed
beside the writer. Other processes (a worker, the CLI) share the
file; SQLite's lock and the busy timeout order their transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from pushtrack.domain.timeutil import now_us
from pushtrack.metrics import WRITER_BATCH
from pushtrack.store.base import (
    ConflictError,
    Engine,
    R,
    StoreError,
    StoreUnavailableError,
    Tx,
    row_maker,
)
from pushtrack.store.schema import MIGRATIONS

T = TypeVar("T")

log = logging.getLogger("pushtrack.store")

#: Most units of work one group commit takes.
GROUP_MAX = 64
#: The writer's page cache by default (index inserts want it); readers get a quarter.
WRITER_CACHE_MB = 64
#: The background checkpointer's period; a writer checkpoints itself past this many pages.
CHECKPOINT_SECONDS = 0.5
WAL_AUTOCHECKPOINT = 16384
#: The checkpointer starts the WAL over past this many pages (``_checkpoint``), and waits
#: at most this long for the write lock and for readers to do it.
RESTART_PAGES = 1024
RESTART_WAIT_MS = 2
BUSY_TIMEOUT_MS = 10_000
#: How often the writer tries again for a write lock another process holds. SQLite's
#: own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms ... between tries, so a purge
#: batch holding the lock 10 ms could keep ingestion out for 18 ms.
LOCK_POLL_S = 0.0005

# Exceptions that are the caller's business, passed through untouched.
_DOMAIN_ERRORS = (ConflictError,)

#: SQLite's primary result codes that mean "the storage cannot be used now",
#: not "this statement is wrong": the API answers them 503 with Retry-After.
_UNAVAILABLE = {
    5: "database busy",  # SQLITE_BUSY (busy timeout ran out)
    6: "database locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "database read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "disk full",  # SQLITE_FULL
    14: "database file cannot be opened",  # SQLITE_CANTOPEN
    15: "database lock protocol error",  # SQLITE_PROTOCOL
}


def _translate(exc: sqlite3.Error, what: str = "") -> StoreError:
    """One ``StoreError`` for a driver error: unavailable for storage faults."""
    code = getattr(exc, "sqlite_errorcode", None)
    kind = _UNAVAILABLE.get(code & 0xFF) if isinstance(code, int) else None
    detail = f"{what}{exc}"
    return StoreUnavailableError(kind, detail) if kind else StoreError(detail)


_FIRST = itemgetter(0)

#: Rows one multi-row ``INSERT … VALUES`` of ``_Tx.many`` takes at most.
MANY_ROWS = 256
#: SQLite's limit on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER).
_MAX_PARAMS = 32766
_VALUES = re.compile(r"(INSERT\b.*?\bVALUES\s*)(\(\s*\?(?:\s*,\s*\?)*\s*\))([^?]*)", re.S | re.I)


@functools.lru_cache(maxsize=256)
def _values_of(sql: str) -> tuple[str, str, str, int] | None:
    """``INSERT … VALUES (?, …) [tail]`` split around its one group of marks, and the
    most rows one statement of it may take; None for any other statement."""
    found = _VALUES.fullmatch(sql)
    if found is None:
        return None
    head, group, tail = found.groups()
    return head, group, tail, min(MANY_ROWS, _MAX_PARAMS // group.count("?"))


def _names(cur: sqlite3.Cursor) -> list[str]:
    """A statement's column names (as written, or as ``AS`` names them)."""
    return [d[0] for d in cur.description or ()]


class _Tx:
    """``Tx`` over one sqlite3 connection."""

    dialect = "sqlite"

    __slots__ = ("_clock", "conn", "memo")

    def __init__(
        self, conn: sqlite3.Connection, clock: Callable[[], int], memo: dict[str, Any]
    ) -> None:
        self.conn = conn
        self._clock = clock
        self.memo = memo

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def one_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> R | None:
        cur = self.conn.execute(sql, params)
        found = cur.fetchone()
        make = row_maker(row, sql, partial(_names, cur))
        return None if found is None else make(found)

    def all_planned(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.all(sql, params)  # no generic plans here to settle on

    def all_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        cur = self.conn.execute(sql, params)
        rows = cur.fetchall()
        return list(map(row_maker(row, sql, partial(_names, cur)), rows))

    def all_unordered_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        fields = ", ".join(getattr(row, "_fields", ()))
        packed = f"SELECT json_group_array(json_array({fields})) FROM ({sql})"
        # the statement's own columns are checked against the class the first time
        make = row_maker(row, sql, partial(self._names_of, sql, params))
        (text,) = self.conn.execute(packed, params).fetchone()
        return list(map(make, msgspec.json.decode(text)))

    def _names_of(self, sql: str, params: Sequence[Any]) -> list[str]:
        return _names(self.conn.execute(f"SELECT * FROM ({sql}) LIMIT 0", params))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.conn.execute(sql, params).fetchone()
        return None if found is None else found[0]

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(map(_FIRST, self.conn.execute(sql, params).fetchall()))

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``executemany``, but an ``INSERT … VALUES (?, …)`` goes as multi-row
        statements (``MANY_ROWS`` rows each, then falling powers of two: a few
        statements, each prepared once and kept in the statement cache). The driver
        lets go of the GIL for each statement it steps, and under load each taking
        back can wait for a thread running Python: one step per row made a thousand
        rows cost several times their work (see ``all_unordered_as``)."""
        split = _values_of(sql)
        if split is None:
            self.conn.executemany(sql, rows)
            return
        head, group, tail, size = split
        batch = rows if isinstance(rows, list) else list(rows)
        start, left = 0, len(batch)
        while left:
            while size > left:
                size //= 2
            self.conn.execute(
                f"{head}{','.join([group] * size)}{tail}",
                list(chain.from_iterable(batch[start : start + size])),
            )
            start += size
            left -= size

    def new_ids(self, table: str, n: int) -> list[int]:
        # Safe: we hold the database's write lock (BEGIN IMMEDIATE) until commit.
        (top,) = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()
        return list(range(top + 1, top + 1 + n))

    def now(self) -> int:
        return self._clock()


def _connect(path: str, *, readonly: bool = False, cache_mb: int = 16) -> sqlite3.Connection:
    """A connection; ``cache_mb`` of page cache (the writer's index inserts want more)."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}?mode=rwc"
    conn = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = {-1024 * cache_mb}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    return conn


def _checkpoint(conn: sqlite3.Connection) -> int:
    """A passive checkpoint, then a restart one if the WAL is past RESTART_PAGES; the
    WAL's length in pages after them (0: the next transaction starts it over)."""
    found = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    pages = int(found[1]) if found else 0
    if pages > RESTART_PAGES:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        if busy == 0:
            return 0
    return pages


def _begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE`` on a connection whose busy timeout is 0 (the writer's): a write
    lock another process holds (the purge, a worker, the CLI) is waited for in short
    steps (``LOCK_POLL_S``), so the writer takes it within a step of its release, for
    as long as the busy timeout. Once it holds the lock, nothing in its transaction
    waits for another connection (WAL: readers never block the writer, and the
    checkpoint after a commit is passive)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(LOCK_POLL_S)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file's schema up to date (``conn``: a connection of its own).

    A schema already up to date takes no lock: a process opening the file beside a
    busy writer (the purge, a worker, the CLI beside ``serve``) starts at once. One
    that migrates takes the write lock in short steps, as the writer does
    (``_begin_immediate``): SQLite's busy handler, sleeping longer and longer, would
    rarely find it free between the transactions of a writer that commits back to
    back, and give up after the busy timeout.
    """
    conn.execute("PRAGMA journal_mode = WAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return
    conn.execute("PRAGMA busy_timeout = 0")
    _begin_immediate(conn)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Unit:
    """One caller's unit of work and where its answer goes.

    Callers on an event loop get an asyncio future, settled on their loop in
    one call per commit group (one wake-up per group, not per unit); callers
    without a loop wait on a thread future.
    """

    __slots__ = ("fn", "future", "loop", "waiter")

    def __init__(
        self, fn: Callable[[Tx], Any], loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] | None = loop.create_future() if loop else None
        self.waiter: Future[Any] | None = None if loop else Future()

    def settle(self, ok: bool, value: Any) -> None:
        target = self.future if self.future is not None else self.waiter
        assert target is not None
        if target.done():  # the caller went away (cancelled)
            return
        if ok:
            target.set_result(value)
        else:
            target.set_exception(value)


def _settle(answers: list[tuple[_Unit, bool, Any]]) -> None:
    for unit, ok, value in answers:
        unit.settle(ok, value)


def _deliver(answers: list[tuple[_Unit, bool, Any]]) -> None:
    """Hand a group's answers to their callers: once per event loop, at once for threads."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Unit, bool, Any]]] = {}
    for answer in answers:
        loop = answer[0].loop
        if loop is None:
            answer[0].settle(answer[1], answer[2])
        else:
            by_loop.setdefault(loop, []).append(answer)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
            loop.call_soon_threadsafe(_settle, items)


def _create_private(path: Path) -> None:
    """Create the database file (and its folder) readable by this user only: 0600 in
    0700. SQLite gives the -wal and -shm files the database file's mode. An existing
    file or folder keeps the mode its owner chose."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path[?params]`` URL (relative, or absolute with four slashes)."""
    return url.partition("?")[0].removeprefix("sqlite://").removeprefix("/")


class SQLiteEngine:
    """The ``Engine`` on a SQLite file."""

    groups_writes = True
    #: One writer: a second batch would only wait in its queue.
    batches_in_flight = 1

    def __init__(
        self, path: str, *, clock: Callable[[], int] = now_us, cache_mb: int = WRITER_CACHE_MB
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.clock = clock
        #: page cache of the writer, and of each reader (a quarter of it)
        self.cache_mb = cache_mb
        self._reader_cache_mb = max(1, cache_mb // 4)
        if path == ":memory:":
            # Each connection (the writer, every reader) would open a database of its own.
            raise StoreError(
                f"cannot open {self.url}: the store needs a file that its connections share"
                " (an in-memory database would be a different, empty one for each of them)"
            )
        try:
            _create_private(Path(path))
            with contextlib.closing(_connect(path)) as conn:
                migrate(conn)
            writer = self._writer_connection()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open {self.url}: {exc}") from exc
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        #: Held by whoever uses the writer's connection: the writer thread for a group,
        #: or a caller writing a batch in its own thread (``_write_here``).
        self._writing = threading.Lock()
        #: ``Tx.memo`` of every transaction of this engine.
        self._memo: dict[str, Any] = {}
        #: The writer's transaction (its connection), until the writer thread stops.
        self._writer_tx: _Tx | None = _Tx(writer, clock, self._memo)
        #: The writer thread has a group and waits for ``_writing``: no batch may
        #: take the connection before it.
        self._writer_waits = False
        #: The WAL's length in pages when the checkpointer last looked.
        self._wal_pages = 0
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._writer.start()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-reader")
        self._closed = False
        self._stop_checkpoints = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="sqlite-checkpointer", daemon=True
        )
        self._checkpointer.start()

    @classmethod
    def from_url(cls, url: str) -> SQLiteEngine:
        """sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy spells them;
        ``?cache_mb=N`` sets the writer's page cache (each reader gets a quarter)."""
        path = sqlite_path(url)
        query = url.partition("?")[2]
        cache_mb = WRITER_CACHE_MB
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if key != "cache_mb" or not value.isdigit() or not 1 <= int(value) <= 65536:
                raise StoreError(
                    f"cannot open {url}: unknown or invalid parameter {key!r}"
                    " (only cache_mb=1..65536)"
                )
            cache_mb = int(value)
        return cls(path or "pushtrack.db", cache_mb=cache_mb)

    # -- plumbing -----------------------------------------------------------------------

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database beside the writer, so commits never wait for it,
        and have the WAL start over once it is copied.

        A passive checkpoint copies the WAL without taking the write lock, but SQLite
        starts the WAL over (writes its next frame at the start of the file) only
        when a transaction begins with every frame copied, which under steady writes
        never happens: the WAL then grows until a commit passes WAL_AUTOCHECKPOINT
        pages and checkpoints itself, and ``_write_here``, which must not commit
        there, hands every batch to the writer thread for the upper half of that
        climb. So once the WAL passes RESTART_PAGES, a restart checkpoint follows
        the passive one: it takes the write lock for the frames committed since
        (a few) and two syncs, and then the next transaction starts the WAL over.
        It waits for the lock, and for readers of an older snapshot, at most
        RESTART_WAIT_MS; if either is in the way the WAL keeps growing until a later
        round finds the way clear. The WAL's length it sees tells ``_write_here``
        when a commit might checkpoint.
        """
        conn = _connect(self.path, cache_mb=1)
        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_SECONDS):
                try:
                    self._wal_pages = _checkpoint(conn)
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed; the writer will checkpoint itself")
        finally:
            conn.close()

    def _writer_connection(self) -> sqlite3.Connection:
        conn = _connect(self.path, cache_mb=self.cache_mb)
        conn.execute("PRAGMA busy_timeout = 0")  # _begin_immediate waits for the lock
        return conn

    def _write_loop(self) -> None:
        tx = self._writer_tx
        assert tx is not None
        conn = tx.conn
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < GROUP_MAX:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    group.append(nxt)
                self._writer_waits = True
                with self._writing:
                    self._writer_waits = False
                    self._commit_group(conn, tx, group)
                if stop:
                    return
        finally:
            with self._writing:
                self._writer_tx = None
                conn.close()

    def _commit_group(self, conn: sqlite3.Connection, tx: _Tx, group: list[_Unit]) -> None:
        """Run a group in one transaction: all units at once, or each in a savepoint.

        Units almost never fail, so the group first runs without savepoints
        (two statements fewer per unit). If one fails, the whole transaction is
        rolled back and the group runs again with a savepoint per unit, so the
        failing unit rolls back alone. Units are written to be safe to run twice.
        """
        WRITER_BATCH.observe(len(group))
        results: list[tuple[_Unit, bool, Any]] = []
        try:
            _begin_immediate(conn)
            try:
                results = [(unit, True, unit.fn(tx)) for unit in group]
            except BaseException as exc:  # noqa: BLE001 - handed to a caller's future
                conn.execute("ROLLBACK")
                if len(group) == 1:
                    _deliver([(group[0], False, exc)])
                    return
                _begin_immediate(conn)
                results = self._isolated(conn, tx, group)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = _translate(exc, "commit failed: ")
            _deliver([(unit, False, failure) for unit in group])
            return
        _deliver(results)

    @staticmethod
    def _isolated(
        conn: sqlite3.Connection, tx: _Tx, group: list[_Unit]
    ) -> list[tuple[_Unit, bool, Any]]:
        results: list[tuple[_Unit, bool, Any]] = []
        for unit in group:
            conn.execute("SAVEPOINT unit")
            try:
                value = unit.fn(tx)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                results.append((unit, False, exc))
            else:
                conn.execute("RELEASE unit")
                results.append((unit, True, value))
        return results

    async def write(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        unit = _Unit(fn, asyncio.get_running_loop())
        assert unit.future is not None
        self._queue.put(unit)
        try:
            result: T = await unit.future
        except _DOMAIN_ERRORS:
            raise
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return result

    async def write_batch(self, fn: Callable[[Tx], T], *, statements_whole: bool = False) -> T:
        """``write``; run here and now if the writer is idle (``_write_here``)."""
        done = self._write_here(fn)
        if done is not _NOT_HERE:
            return done  # type: ignore[return-value]
        return await self.write(fn)  # the writer's transaction holds every statement

    def _write_here(self, fn: Callable[[Tx], T]) -> T | object:
        """Run ``fn`` in a transaction of its own on the writer's connection, in the
        calling thread, when the writer is idle: nothing queued for it, no group
        being committed, no other process holding SQLite's write lock, and a WAL
        short enough that the commit will not checkpoint. ``_NOT_HERE`` otherwise,
        having done nothing (the writer thread then takes it in turn, waiting for
        the lock as it does).

        For a batch of small writes on an event loop (the device reports): the hand
        over to the writer thread and back (its wake-up, the GIL passed between the
        threads at every statement, the answer's wake-up of the loop) cost more CPU
        than the batch's own statements, and the loop waits only for those. Nothing
        in it waits for another connection: ``BEGIN IMMEDIATE`` is tried once (busy
        timeout 0), and the transaction runs alone on the connection. Its commit
        does not checkpoint (that would wait for fsync): a commit checkpoints once the
        WAL passes WAL_AUTOCHECKPOINT pages, which the checkpointer thread keeps it far
        below (starting it over, ``_checkpoint_loop``); when it last saw the WAL past
        half of that, the batch goes to the writer thread.
        """
        if (
            self._closed
            or self._writer_waits
            or self._wal_pages > WAL_AUTOCHECKPOINT // 2
            or not self._queue.empty()
        ):
            return _NOT_HERE
        if not self._writing.acquire(blocking=False):
            return _NOT_HERE
        try:
            tx = self._writer_tx
            if tx is None:  # the writer thread has not started, or has stopped
                return _NOT_HERE
            conn = tx.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    return _NOT_HERE  # another process writes
                raise _translate(exc) from exc
            WRITER_BATCH.observe(1)
            try:
                result = fn(tx)
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc) from exc
                raise
            return result
        finally:
            self._writing.release()

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run a unit of work from a thread that has no event loop (CLI, jobs)."""
        unit = _Unit(fn)
        assert unit.waiter is not None
        self._queue.put(unit)
        try:
            result: T = unit.waiter.result()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return result

    def _reader(self) -> _Tx:
        tx: _Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            conn = _connect(self.path, cache_mb=self._reader_cache_mb)
            with self._readers_lock:
                self._readers.append(conn)
            tx = _Tx(conn, self.clock, self._memo)
            self._local.tx = tx
        return tx

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run a read in the calling thread (for streaming exports from a worker thread)."""
        tx = self._reader()
        try:
            tx.conn.execute("BEGIN")
            try:
                return fn(tx)
            finally:
                tx.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def read(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.read_sync, fn)

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_checkpoints.set()
        self._queue.put(None)
        self._writer.join()
        if self._checkpointer.is_alive():
            self._checkpointer.join()
        self._pool.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


#: ``SQLiteEngine._write_here``: the writer was not idle, nothing was done.
_NOT_HERE = object()

#: mypy checks here that the engine satisfies the ``Engine`` protocol.
_ENGINE_CHECK: type[Engine] = SQLiteEngine
