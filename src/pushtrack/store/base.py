"""The types that cross the store boundary, and the ``Engine`` and ``Tx`` protocols.

Rows never leave the store: engines return these types. Every method is a
coroutine; engines run blocking database work off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar, cast

import msgspec

from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import Status
from pushtrack.domain.targeting import Node

T = TypeVar("T")
#: A row class: a ``NamedTuple`` whose fields are a statement's column names.
R = TypeVar("R", bound=tuple[Any, ...])


class StoreError(Exception):
    """The database failed (not the caller's input); the API answers 500."""


class StoreUnavailableError(StoreError):
    """The database cannot be used right now (full, read-only, locked, I/O error,
    unreachable); the API answers 503 with ``Retry-After`` and the caller tries again.

    ``kind`` names the fault in a few words, the same for every occurrence, so the
    API can log it once per interval instead of once per request.
    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class ConflictError(Exception):
    """A write named something that does not exist or is in the wrong state."""


class AccessError(ConflictError):
    """The thing exists, but the caller's token is restricted from it."""


class App(msgspec.Struct, frozen=True):
    id: int
    code: str
    name: str
    account: str
    tracking: bool
    open_logging: bool
    device_token_required: bool
    created_at: int


class TokenInfo(msgspec.Struct, frozen=True):
    id: int
    account: str
    kind: str  # "server" | "device"
    prefix: str
    #: Application codes the token is limited to; None = every application of the account.
    apps: frozenset[str] | None
    #: Methods the token is limited to; None = every method of its kind.
    methods: frozenset[str] | None
    created_at: int
    revoked: bool


class DeviceIn(msgspec.Struct, frozen=True):
    hwid: str
    device_type: int
    push_token: str | None = None
    language: str | None = None
    timezone: int | None = None
    tags: dict[str, Any] | None = None
    user_id: str | None = None
    app_version: str | None = None
    device_model: str | None = None
    os_version: str | None = None
    #: IANA time zone the device named (``timezone`` then holds its offset at registration).
    tz_name: str | None = None
    #: A browser subscription's keys (base64), when ``push_token`` is its endpoint.
    web_p256dh: str | None = None
    web_auth: str | None = None


class DeviceSeen(msgspec.Struct, frozen=True):
    """What a device reports about itself outside registerDevice (None: not reported).

    ``device_type`` is needed only to record a device not registered yet.
    """

    hwid: str
    device_type: int | None = None
    language: str | None = None
    timezone: int | None = None
    tz_name: str | None = None
    user_id: str | None = None
    app_version: str | None = None
    device_model: str | None = None
    os_version: str | None = None
    #: When the application was opened (microseconds, UTC): applicationOpen.
    opened_at: int | None = None


class DeviceState(msgspec.Struct, frozen=True):
    """checkDevice's view of a device."""

    exists: bool
    #: It has a push token that no gateway has declared dead.
    subscribed: bool


class EventIn(msgspec.Struct, frozen=True):
    """One postEvent, as stored."""

    hwid: str
    name: str
    attributes: dict[str, Any]
    #: When it happened (microseconds, UTC).
    occurred_at: int
    user_id: str | None = None
    #: The device's own wall clock at that moment, as it sent it (seconds), if it did.
    local_time: int | None = None


class Targeting(msgspec.Struct, frozen=True):
    #: Entries as the sender gave them (hwid or push token), order kept.
    devices: tuple[str, ...] | None = None
    platforms: tuple[int, ...] | None = None
    users: tuple[str, ...] | None = None
    #: Tag conditions, a saved filter or a filter expression, as one selection tree
    #: over the message's application (``store.targeting.audience_where``).
    selection: Node | None = None


class MessagePlan(msgspec.Struct, frozen=True):
    """One validated notification of createMessage, ready to persist."""

    notification: dict[str, Any]  # the validated fields, for payload templates
    targeting: Targeting
    send_at: int  # microseconds, UTC
    campaign: str | None = None
    #: Deliver at ``send_at``'s wall-clock time in each device's time zone.
    local_time: bool = False


class MessageCreated(msgspec.Struct, frozen=True):
    code: str
    id: int
    #: One per entry of ``targeting.devices`` (when tracking and devices were given).
    tracking_codes: list[str] | None


class LogQuery(msgspec.Struct, frozen=True):
    account: str
    apps: frozenset[str] | None = None  # token restriction
    message_id: int | None = None
    message_code: str | None = None
    campaign_code: str | None = None
    tracking_code: str | None = None
    hwids: tuple[str, ...] | None = None
    user_id: str | None = None
    application_code: str | None = None
    date_from: int | None = None
    date_to: int | None = None
    statuses: tuple[Status, ...] | None = None
    platforms: tuple[Platform, ...] | None = None
    after: tuple[int, int] | None = None  # (ts, event id) cursor position
    limit: int = 1000


class LogRow(msgspec.Struct, frozen=True):
    event_id: int
    ts: int
    status: Status
    description: str
    application_code: str
    message_code: str
    message_id: int
    tracking_code: str
    hwid: str
    target_id: str
    user_id: str | None
    platform: int
    #: The gateway's id for the notification (apns-id, FCM message name, Web Push
    #: Location), on the event recording the gateway's answer.
    gateway_id: str | None = None
    #: What kind of failure (domain/failures.py): on a ``failed`` event, and on the
    #: ``sent`` event of a delivery being retried.
    failure_class: str | None = None
    #: How many times the gateway has been tried for the delivery so far.
    attempts: int = 0
    #: The last transient reason of a delivery being retried (on its ``sent`` event).
    retry_reason: str | None = None


class Tx(Protocol):
    """What transaction logic needs of an engine's open transaction.

    SQL uses ``?`` placeholders; engines translate where their driver differs.

    Results are read by name: ``one_as``/``all_as`` give rows as a ``NamedTuple``
    class whose fields are the statement's column names (``AS`` names them where a
    column is an expression), checked against the statement once (``row_maker``);
    ``scalar`` and ``column`` give a single value and a single column. ``one``,
    ``all`` and ``all_planned`` give plain tuples: for pages of thousands of rows that
    are unpacked where they are read, their columns named beside the statement (a
    NamedTuple, a tuple subclass, is never untracked by the cyclic GC: ARCHITECTURE.md),
    and for tests.
    """

    dialect: str  # "sqlite" | "postgresql", for the few statements that differ
    #: Values that never change once the database exists (the tracking secret), read
    #: once and kept by the engine for all its transactions.
    memo: dict[str, Any]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def one_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> R | None:
        """The first row, as ``row``; None if there is none."""
        ...

    def all_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        """Every row, as ``row``."""
        ...

    def all_unordered_as(self, row: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        """``all_as`` for reads of many rows whose order does not matter (integer, text
        and NULL columns only). SQLite packs them into one JSON array in one step
        (``json_group_array``): its driver lets go of the GIL and takes it back for
        every row it steps, and under load each taking back can wait for a thread
        running Python (the event loop, a planner) to yield, so a thousand-row read
        could take several times its work."""
        ...

    def all_planned(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """``all``, planned for these values each time: for a statement whose good plan
        depends on them (PostgreSQL would otherwise settle, after a few runs of a
        prepared statement, on a generic plan made without them)."""
        ...

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row; None if there is no row (or it is NULL)."""
        ...

    def column(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The first column of every row."""
        ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def new_ids(self, table: str, n: int) -> list[int]:
        """``n`` unused primary keys of ``table``, ascending."""
        ...

    def now(self) -> int:
        """This transaction's clock (microseconds, UTC)."""
        ...


#: (row class, statement) -> the row class's maker, once the statement's column names
#: were found to be the class's fields.
_MAKERS: dict[tuple[type[Any], str], Callable[[Sequence[Any]], Any]] = {}
#: Statements are mostly constants; those built per call (``IN`` lists of every length)
#: would grow the cache without end: past this many it starts again.
_MAKERS_MAX = 4096


def row_maker(
    row: type[R], sql: str, names: Callable[[], Sequence[str]]
) -> Callable[[Sequence[Any]], R]:
    """What makes a ``row`` of a driver's tuple from ``sql``, for the engines.

    The first time a (class, statement) pair meets, the statement's column names
    (``names()``, from the cursor) must be the class's fields, in order, or
    ``TypeError`` says which differ: a row is read by the names its statement gives,
    and a class and a statement that drift apart fail on their first run (every
    statement runs in the tests on both engines), never read one column as another.
    After that a row costs one C call (``tuple.__new__``, no Python per row; as
    many fields as columns was checked).
    """
    make = _MAKERS.get((row, sql))
    if make is not None:
        return make
    fields: tuple[str, ...] = getattr(row, "_fields", ())
    columns = tuple(names())
    if columns != fields:
        raise TypeError(
            f"{row.__name__} has the fields {', '.join(fields)}; the statement's columns"
            f" are {', '.join(columns)}: {sql}"
        )
    if len(_MAKERS) >= _MAKERS_MAX:
        _MAKERS.clear()
    make = _MAKERS[(row, sql)] = cast(Callable[[Sequence[Any]], R], partial(tuple.__new__, row))
    return make


class Engine(Protocol):
    """A database engine: runs transaction functions, off the event loop.

    ``write`` functions run in one transaction that commits before the call
    returns. Engines may commit several callers' functions together; a function
    that fails still rolls back alone (SQLite reruns such a group with a
    savepoint per function, only after a failure). Domain errors
    (``ConflictError``) raised inside pass through unchanged, after their
    function's writes were rolled back.
    """

    url: str
    clock: Callable[[], int]
    #: ``write`` commits the units waiting for it together (SQLite's writer thread).
    groups_writes: bool
    #: Batches of one kind (``store/batch.py``) worth writing at the same time.
    batches_in_flight: int

    async def write(self, fn: Callable[[Tx], T]) -> T: ...

    async def write_batch(self, fn: Callable[[Tx], T], *, statements_whole: bool = False) -> T:
        """``write`` for a batch of small writes (``store/batch.py``). PostgreSQL sends
        its statements pipelined: one whose result is not read goes out with the next.

        ``statements_whole``: each statement of ``fn`` is a whole unit of work by itself
        (a guarded transition with its events and counters), so it may commit apart from
        the others. PostgreSQL then sends no BEGIN or COMMIT: the statements run in the
        implicit transaction of one pipeline sync, all in one round trip when only the
        last one's rows are read, and commit before the call returns."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T: ...

    def read_sync(self, fn: Callable[[Tx], T]) -> T: ...

    async def close(self) -> None: ...


class DeviceView(msgspec.Struct, frozen=True):
    """One device as the sender sees it (``pushtrack app device``)."""

    hwid: str
    device_type: int
    push_token: str | None
    subscribed: bool
    language: str | None
    timezone: int | None
    tz_name: str | None
    user_id: str | None
    app_version: str | None
    device_model: str | None
    os_version: str | None
    badge: int | None
    #: When the application was last opened (applicationOpen), microseconds UTC.
    last_open: int | None
    created_at: int
    updated_at: int
