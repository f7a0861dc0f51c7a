"""The scale-out engine: PostgreSQL through psycopg 3 and a connection pool.

Each unit of work runs on a pooled connection in a worker thread (the
transaction functions are synchronous): a write in its own transaction, which
commits before the caller is answered; a read statement by statement (under
READ COMMITTED a transaction would add round trips, not consistency). Many
processes on many hosts share one database: jobs are claimed with
``FOR UPDATE SKIP LOCKED``, migrations and partition upkeep take advisory
locks. A unit that loses a race the database detects
(deadlock, serialization failure, a unique key taken meanwhile) runs again
from the start, up to ``ATTEMPTS`` times; it saw nothing committed.

Bulk appends (a plain ``INSERT ... VALUES`` of many rows) go through COPY;
other batches through psycopg's pipelined ``executemany``. Daily ``events``
partitions are kept ready ahead of the clock; a row no partition takes makes
its day's partition and the unit of work runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool, PoolTimeout

from pushtrack.domain.timeutil import DAY_US, US, now_us
from pushtrack.store.base import (
    ConflictError,
    Engine,
    R,
    StoreError,
    StoreUnavailableError,
    Tx,
    row_maker,
)
from pushtrack.store.pg_partitions import ensure_partitions
from pushtrack.store.pg_schema import migrate

T = TypeVar("T")

log = logging.getLogger(__name__)

POOL_MIN = 1
POOL_MAX = 10
#: How long a unit of work waits for a free connection.
POOL_TIMEOUT_S = 30.0
#: How long a unit of work waits for a connection (the executor has one thread per
#: pooled connection, so only a server that cannot be reached makes it wait).
CHECKOUT_TIMEOUT_S = 5.0
#: How long the first connection may take before start-up gives up.
CONNECT_TIMEOUT_S = 10
#: Runs of a unit of work that keeps losing races before its error is the caller's.
ATTEMPTS = 4
#: Daily partitions kept ready beyond today.
DAYS_AHEAD = 3
#: Daily upkeep waits this long for its lock on ``events``, then tries again later.
UPKEEP_LOCK_TIMEOUT = "2s"
UPKEEP_RETRY_US = 60 * US
#: Partitions one unit of work may have made for its rows before it gives up.
MAKE_PARTITIONS_MAX = 32
#: Batches of one kind (device reports) written at the same time, each in its own
#: transaction on its own connection: while one waits for its commit, the next is
#: written.
BATCHES_IN_FLIGHT = 4
#: ``many`` switches from pipelined executemany to COPY from this many rows.
COPY_MIN_ROWS = 16

_DOMAIN_ERRORS = (ConflictError,)
_OUT_OF_RESOURCES = (pg_errors.DiskFull, pg_errors.OutOfMemory, pg_errors.InsufficientResources)
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.UniqueViolation)
_PLAIN_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([\w\s,]+)\) VALUES \(([?,\s]+)\)\s*")
_IDENT = re.compile(r"\w+")
_PARTITION_KEY = re.compile(r"\(ts\) = \((-?\d+)\)")
_MARK = re.compile(r"\?|\b(NOT\s+)?IN\s*\(\s*\?(?:\s*,\s*\?)+\s*\)", re.IGNORECASE)


class _Query(NamedTuple):
    sql: bytes
    #: Per psycopg parameter: 0 takes one ``?`` value, n > 0 a list of the next n.
    #: None: every ``?`` is one parameter, as given.
    groups: tuple[int, ...] | None


@functools.lru_cache(maxsize=2048)
def _pg_query(sql: str) -> _Query:
    """Our SQL in psycopg's terms: ``?`` to ``%s`` (a literal ``%`` doubled).

    A list ``IN (?, ?, ...)`` becomes ``= ANY(%s)`` with one array parameter
    (``NOT IN`` becomes ``<> ALL``; both keep SQL's NULL rules): one statement
    text for every list length, which the server parses once and psycopg
    prepares, instead of a new one for each length.
    """
    out: list[str] = []
    groups: list[int] = []
    pos = 0
    for m in _MARK.finditer(sql):
        out.append(sql[pos : m.start()].replace("%", "%%"))
        pos = m.end()
        if m.group(0) == "?":
            out.append("%s")
            groups.append(0)
        else:
            out.append("<> ALL(%s)" if m.group(1) else "= ANY(%s)")
            groups.append(m.group(0).count("?"))
    out.append(sql[pos:].replace("%", "%%"))
    return _Query("".join(out).encode(), tuple(groups) if any(groups) else None)


def _params(query: _Query, params: Sequence[Any]) -> Sequence[Any]:
    if query.groups is None:
        return params
    packed: list[Any] = []
    i = 0
    for n in query.groups:
        if n:
            packed.append(list(params[i : i + n]))
            i += n
        else:
            packed.append(params[i] if i < len(params) else None)
            i += 1
    if i != len(params):
        raise psycopg.ProgrammingError(f"the query has {i} placeholders, {len(params)} values")
    return packed


@functools.lru_cache(maxsize=256)
def _copy_sql(sql: str) -> bytes | None:
    """The COPY statement doing what a plain multi-row INSERT does, if it is one."""
    m = _PLAIN_INSERT.fullmatch(sql)
    if m is None:
        return None
    columns = [c.strip() for c in m.group(2).split(",")]
    if m.group(3).count("?") != len(columns):
        return None
    return f"COPY {m.group(1)} ({', '.join(columns)}) FROM STDIN".encode()


class _BoolAsInt(Dumper):
    """Python bools bound as 0/1: flags are INTEGER columns, as in SQLite."""

    format = Format.TEXT
    oid = postgres.types["int2"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(bool, _BoolAsInt)


_FIRST = itemgetter(0)


def _names(cur: psycopg.Cursor[Any]) -> list[str]:
    """A statement's column names (PostgreSQL folds unquoted ones to lower case)."""
    return [c.name for c in cur.description or ()]


class _PgTx:
    """``Tx`` over one open psycopg transaction."""

    dialect = "postgresql"

    __slots__ = ("_clock", "_enter_pipeline", "_pipeline", "conn", "cur", "memo")

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        clock: Callable[[], int],
        memo: dict[str, Any],
        pipeline: psycopg.Pipeline | None = None,
        enter_pipeline: Callable[[], psycopg.Pipeline] | None = None,
    ) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self._clock = clock
        self.memo = memo
        #: In pipeline mode, statements whose result nobody reads (``many``) go out
        #: with the next one that is read, or with COMMIT: one round trip, not several.
        self._pipeline = pipeline
        #: Pipeline mode from the first ``many`` on (a unit whose statements are whole:
        #: one that only reads the rows of one statement sends it with its sync).
        self._enter_pipeline = enter_pipeline

    def _execute(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        query = _pg_query(sql)
        return self.cur.execute(query.sql, _params(query, params))

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._execute(sql, params).fetchall()

    def one_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> R | None:
        cur = self._execute(sql, params)
        found = cur.fetchone()
        make = row_maker(row, sql, partial(_names, cur))
        return None if found is None else make(found)

    def all_planned(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        query = _pg_query(sql)
        return self.cur.execute(query.sql, _params(query, params), prepare=False).fetchall()

    def all_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        cur = self._execute(sql, params)
        rows = cur.fetchall()
        return list(map(row_maker(row, sql, partial(_names, cur)), rows))

    def all_unordered_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        return self.all_as(row, sql, params)  # psycopg reads a result whole already

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self._execute(sql, params).fetchone()
        return None if found is None else found[0]

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(map(_FIRST, self._execute(sql, params).fetchall()))

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._execute(sql, params)
        if self._pipeline is not None:
            self._pipeline.sync()  # the row count is this statement's result
        return cur.rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return
        if self._pipeline is None and self._enter_pipeline is not None:
            self._pipeline = self._enter_pipeline()
        pipelined = self._pipeline is not None  # COPY has no pipeline mode
        copy_sql = _copy_sql(sql) if len(batch) >= COPY_MIN_ROWS and not pipelined else None
        if copy_sql is None:
            query = _pg_query(sql)
            self.cur.executemany(query.sql, [_params(query, row) for row in batch])
            return
        with self.cur.copy(copy_sql) as copy:
            for row in batch:
                copy.write_row(row)

    def new_ids(self, table: str, n: int) -> list[int]:
        if not _IDENT.fullmatch(table):
            raise ValueError(f"not a table name: {table!r}")
        rows = self.cur.execute(
            b"SELECT nextval(%s) FROM generate_series(1, %s)", (f"{table}_id_seq", n)
        ).fetchall()
        return sorted(map(_FIRST, rows))

    def now(self) -> int:
        return self._clock()


def _translate(exc: psycopg.Error) -> StoreError:
    """One ``StoreError`` for a driver error: unavailable when the server cannot be
    used now (unreachable, restarting, out of disk, read-only), so the API answers 503."""
    if isinstance(exc, _OUT_OF_RESOURCES):
        return StoreUnavailableError("database out of resources", str(exc))
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return StoreUnavailableError("database read-only", str(exc))
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        # unreachable, shutting down, the pool's PoolTimeout, a connection lost
        return StoreUnavailableError("database unreachable", str(exc))
    return StoreError(str(exc))


class PostgresEngine:
    """The ``Engine`` on a PostgreSQL database."""

    url: str
    clock: Callable[[], int]
    groups_writes = False
    batches_in_flight = BATCHES_IN_FLIGHT

    def __init__(
        self, url: str, *, clock: Callable[[], int] = now_us, max_connections: int = POOL_MAX
    ) -> None:
        self.url = url
        self.clock = clock
        self._closed = False
        #: ``Tx.memo`` of every transaction of this engine.
        self._memo: dict[str, Any] = {}
        #: ``unchecked``: this thread is taking a connection for statements that are
        #: whole (``_check``).
        self._local = threading.local()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=POOL_MIN,
            max_size=max_connections,
            open=False,
            timeout=POOL_TIMEOUT_S,
            configure=_configure,
            check=self._check,
            name="pushtrack",
        )
        try:
            # One plain connection first: a wrong URL, host or password fails at once
            # with the server's own words, instead of the pool retrying for its timeout.
            psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S).close()
            self._pool.open(wait=True, timeout=POOL_TIMEOUT_S)
            with self._pool.connection() as conn:
                migrate(conn)
        except psycopg.Error as exc:
            self._pool.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot open {_redacted(url)}: {reason}") from exc
        self._executor = ThreadPoolExecutor(max_connections, thread_name_prefix="pg")
        #: Partition upkeep is next due when the clock leaves [_upkept, _upkeep_at).
        self._upkept = 0
        self._upkeep_at = 0
        self._upkeep_lock = threading.Lock()
        self._upkeep()

    @classmethod
    def from_url(cls, url: str) -> PostgresEngine:
        return cls(url)

    # -- plumbing -----------------------------------------------------------------------

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's check of a connection it hands out: an empty statement, one round
        trip. A batch whose statements are whole (``write_batch``) takes its connection
        unchecked: if that one turns out dead, the batch runs again on a checked one
        (running its statements twice changes nothing)."""
        if not getattr(self._local, "unchecked", False):
            ConnectionPool.check_connection(conn)

    def _upkeep(self) -> None:
        """Make sure the partitions of today and the ``DAYS_AHEAD`` days after exist.

        Runs at start and then once a day (by the engine's clock) before a write.
        If it cannot have its lock in time, it tries again a minute later (an
        insert meanwhile makes the partition it needs, see ``_transact``).
        """
        now = self.clock()
        today = now - now % DAY_US

        def ensure(tx: Tx) -> None:
            tx.run(f"SET LOCAL lock_timeout = '{UPKEEP_LOCK_TIMEOUT}'")
            ensure_partitions(tx, today, today + DAYS_AHEAD * DAY_US)

        try:
            self._transact(ensure, attempts=1)
        except StoreError as exc:
            log.warning("events partitions not extended, will retry: %s", exc)
            self._upkept, self._upkeep_at = now, now + UPKEEP_RETRY_US
            return
        self._upkept, self._upkeep_at = today, today + DAY_US

    def _maybe_upkeep(self) -> None:
        if self._upkept <= self.clock() < self._upkeep_at:
            return
        if self._upkeep_lock.acquire(blocking=False):
            try:
                self._upkeep()
            finally:
                self._upkeep_lock.release()

    def _transact(
        self,
        fn: Callable[[Tx], T],
        attempts: int = ATTEMPTS,
        *,
        read: bool = False,
        pipelined: bool = False,
        implicit: bool = False,
    ) -> T:
        lost = made = 0
        unchecked = implicit
        while True:
            try:
                return self._once(fn, read, pipelined, implicit, unchecked)
            except _DOMAIN_ERRORS:
                raise
            except _RETRYABLE as exc:
                lost += 1
                if lost >= attempts:
                    raise StoreError(str(exc)) from exc
                log.debug("retrying a unit of work after %s", type(exc).__name__)
            except pg_errors.CheckViolation as exc:
                day = _missing_partition(exc)
                if day is None or made >= MAKE_PARTITIONS_MAX:
                    raise StoreError(str(exc)) from exc
                made += 1
                log.info("making the missing events partition of %s", day)
                self._transact(partial(ensure_partitions, first_day_us=day, last_day_us=day), 1)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if not unchecked or isinstance(exc, PoolTimeout):
                    raise _translate(exc) from exc
                unchecked = False  # perhaps a connection that died idle: once more, checked
                log.debug("retrying a batch on a checked connection after %s", exc)
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    def _once(
        self,
        fn: Callable[[Tx], T],
        read: bool,
        pipelined: bool = False,
        implicit: bool = False,
        unchecked: bool = False,
    ) -> T:
        if not unchecked:
            return self._on_connection(fn, read, pipelined, implicit)
        self._local.unchecked = True
        try:
            return self._on_connection(fn, read, pipelined, implicit)
        finally:
            self._local.unchecked = False

    def _on_connection(
        self, fn: Callable[[Tx], T], read: bool, pipelined: bool, implicit: bool
    ) -> T:
        with self._pool.connection(timeout=CHECKOUT_TIMEOUT_S) as conn:
            # Under READ COMMITTED every statement takes a fresh snapshot, in a
            # transaction or not: a read gains nothing from BEGIN and COMMIT.
            conn.autocommit = read or implicit
            if implicit:
                # No BEGIN: the server runs what is sent up to a sync in one implicit
                # transaction and commits it at the sync, before the answer is read. A
                # statement alone goes out with its sync (one round trip); statements
                # whose rows nobody reads open a pipeline, whose sync leaving it sends
                # (and waits for) before the answer is returned.
                with contextlib.ExitStack() as pipeline:
                    tx = _PgTx(
                        conn,
                        self.clock,
                        self._memo,
                        enter_pipeline=lambda: pipeline.enter_context(conn.pipeline()),
                    )
                    return fn(tx)
            try:
                if pipelined:
                    with conn.pipeline() as pipeline:
                        result = fn(_PgTx(conn, self.clock, self._memo, pipeline))
                        conn.commit()
                    return result
                result = fn(_PgTx(conn, self.clock, self._memo))
            except BaseException:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
                raise
            conn.commit()
            return result

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- the Engine protocol ------------------------------------------------------------

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run a unit of work in the calling thread; committed when this returns."""
        self._check_open()
        self._maybe_upkeep()
        return self._transact(fn)

    def write_batch_sync(self, fn: Callable[[Tx], T], *, statements_whole: bool = False) -> T:
        """``write_sync`` for a batch of small writes, its statements pipelined; with
        ``statements_whole`` in the implicit transaction of one sync (``Engine``)."""
        self._check_open()
        self._maybe_upkeep()
        return self._transact(fn, pipelined=True, implicit=statements_whole)

    def read_sync(self, fn: Callable[[Tx], T]) -> T:
        """Run a read in the calling thread."""
        self._check_open()
        return self._transact(fn, read=True)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        return await self._in_thread(self.write_sync, fn)

    async def write_batch(self, fn: Callable[[Tx], T], *, statements_whole: bool = False) -> T:
        run = partial(self.write_batch_sync, statements_whole=statements_whole)
        return await self._in_thread(run, fn)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        return await self._in_thread(self.read_sync, fn)

    async def _in_thread(self, run: Callable[[Callable[[Tx], T]], T], fn: Callable[[Tx], T]) -> T:
        self._check_open()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, run, fn)
        except RuntimeError as exc:  # the executor shut down meanwhile
            raise StoreError("store is closed") from exc
        return await future

    async def close(self) -> None:
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=True)
        self._pool.close()


def _missing_partition(exc: pg_errors.CheckViolation) -> int | None:
    """The ``ts`` of an events row that no partition takes, if that was the error."""
    if not (exc.diag.message_primary or "").startswith('no partition of relation "events"'):
        return None
    m = _PARTITION_KEY.search(exc.diag.message_detail or "")
    return int(m.group(1)) if m else None


def _redacted(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


#: mypy checks here that the engine satisfies the ``Engine`` protocol.
_ENGINE_CHECK: type[Engine] = PostgresEngine
