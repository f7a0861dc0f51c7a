"""createMessage and deleteMessage as units of work (getMessageLog reads: ``trail.py``).

One createMessage request is read and planned by ``prepare_messages`` (outside
any write transaction), then written by one call of ``write_messages``. A
message to an explicit ``devices`` list (at most 1000) is written whole:
message, payload templates, deliveries, their ``created`` (and, for unknown
or unsubscribed devices, ``failed``) events, the counters, and the dispatch
jobs that will send them. A message to an audience (platforms, users, a
selection, or the whole application) is recorded with its targeting and an
``EXPAND`` job; that job writes its deliveries in bounded steps
(``store/expansion.py``) with the same functions: ``plan_deliveries``,
``ensure_templates``, ``write_deliveries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple, cast

import msgspec

from pushtrack.domain import codes
from pushtrack.domain.jobs import DispatchParams, ExpandParams, JobKind, encode
from pushtrack.domain.payload import build_template
from pushtrack.domain.platforms import Platform, platform_of
from pushtrack.domain.status import (
    DESC_CANCELLED,
    DESC_NOT_IN_AUDIENCE,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    MessageStatus,
    Status,
)
from pushtrack.domain.targeting import Node
from pushtrack.domain.timeutil import local_to_utc
from pushtrack.store import jobs
from pushtrack.store.base import (
    AccessError,
    App,
    ConflictError,
    MessageCreated,
    MessagePlan,
    Targeting,
    Tx,
)
from pushtrack.store.events import append_events
from pushtrack.store.jsontext import dumps
from pushtrack.store.targeting import audience_where
from pushtrack.store.tracking import tracking_key

#: Deliveries per dispatch job.
DISPATCH_CHUNK = 1000

_CREATED, _FAILED = int(Status.CREATED), int(Status.FAILED)


# -- messages ---------------------------------------------------------------------------

#: Job kind that expands an audience message into deliveries (``store/expansion.py``).
EXPAND = JobKind.EXPAND

DEVICE_COLUMNS = (
    "d.id, d.hwid, d.push_token, d.device_type, d.language, d.user_id, d.subscribed, d.timezone,"
    " d.tz_name, EXISTS (SELECT 1 FROM user_devices ud"
    " WHERE ud.user_id = d.user_id AND ud.device_id = d.id) AS paired"
)


class Device(NamedTuple):
    """A device row as the steps below read it (the columns of ``DEVICE_COLUMNS``)."""

    id: int
    hwid: str
    push_token: str | None
    device_type: int
    language: str | None
    user_id: str | None
    subscribed: int
    timezone: int | None
    tz_name: str | None
    #: ``user_devices`` holds (user_id, id) already (pairs are never removed).
    paired: bool


def read_devices(tx: Tx, sql: str, params: Sequence[Any]) -> list[Device]:
    """Devices selected by ``sql`` (which selects ``DEVICE_COLUMNS``)."""
    return tx.all_as(Device, sql, params)


#: (entry as the sender gave it, its device or None): one target of a message.
Target = tuple[str, Device | None]
#: (platform, language or None): the key of a payload template.
TemplateKey = tuple[int, str | None]


def _resolve(tx: Tx, app: App, entries: Sequence[str]) -> dict[str, Device]:
    """Map each entry (hwid first, then push token) to its device row."""
    found: dict[str, Device] = {}
    unique = list(dict.fromkeys(entries))
    for start in range(0, len(unique), 900):
        part = unique[start : start + 900]
        marks = ",".join("?" * len(part))
        for dev in tx.all_unordered_as(
            Device,
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ? AND d.hwid IN ({marks})",
            (app.id, *part),
        ):
            found[dev.hwid] = dev
    rest = [e for e in unique if e not in found]
    for start in range(0, len(rest), 900):
        part = rest[start : start + 900]
        marks = ",".join("?" * len(part))
        for dev in read_devices(
            tx,
            f"SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.app_id = ?"
            f" AND d.push_token IN ({marks}) ORDER BY d.updated_at",
            (app.id, *part),
        ):
            assert dev.push_token is not None
            found[dev.push_token] = dev  # the most recently updated device wins
    return found


def explicit_targets(tx: Tx, app: App, devices: Sequence[str]) -> list[Target]:
    """The targets of an explicit ``devices`` list, in the sender's order."""
    found = _resolve(tx, app, devices)
    return [(e, found.get(e)) for e in devices]


class Prepared(msgspec.Struct, frozen=True):
    """One message of a createMessage request, read and planned before its write
    transaction (``prepare_messages``): what the writer then only writes."""

    app: App
    plan: MessagePlan
    #: Its deliveries (None: an audience message, expanded by a job).
    planned: Planned | None = None
    #: Its payload templates, one per key of ``planned.keys``, in that order.
    templates: list[Template] = []


class Preparation(msgspec.Struct, frozen=True):
    """A request's messages prepared, and the secret their tracking codes derive under."""

    messages: list[Prepared]
    key: bytes


class Written(msgspec.Struct, frozen=True):
    """What the write transaction gave a message: its code, id, and deliveries' ids."""

    code: str
    id: int
    delivery_ids: list[int]


def prepare_messages(tx: Tx, items: Sequence[tuple[App, MessagePlan]]) -> Preparation:
    """Read and plan a request's messages outside the write transaction: the targets
    (devices by hwid or push token), what the other targeting leaves out, the
    deliveries, the payload templates, and which (user id, device) pairs are new
    (pairs are never removed, so one found here is still there at the write).

    A device that changes between this read and the write is seen as it was here,
    as if the request had come a moment earlier.
    """
    now = tx.now()
    out: list[Prepared] = []
    for app, plan in items:
        if plan.targeting.devices is None:
            out.append(Prepared(app, plan))
            continue
        planned = _plan_explicit(tx, app, plan, now)
        templates = template_rows(plan.notification, planned.keys)
        out.append(Prepared(app, plan, planned, templates))
    return Preparation(out, tracking_key(tx))


def write_messages(tx: Tx, prepared: Preparation) -> list[Written]:
    """Write prepared messages (one transaction): rows only, no planning."""
    return [_write_message(tx, p) for p in prepared.messages]


def created(prepared: Preparation, written: Sequence[Written]) -> list[MessageCreated]:
    """The answer: each message's code and, for tracked explicit messages, the tracking
    code of each entry (derived after the commit, outside the writer)."""
    out = []
    for p, w in zip(prepared.messages, written, strict=True):
        tracking = None
        if p.planned is not None and p.app.tracking:
            ids = w.delivery_ids
            tracking = codes.tracking_codes_of(prepared.key, [ids[s] for s in p.planned.slots])
        out.append(MessageCreated(code=w.code, id=w.id, tracking_codes=tracking))
    return out


def _write_message(tx: Tx, p: Prepared) -> Written:
    """One message: to an audience (expanded by a job), or to an explicit devices list,
    written whole: templates, message row, deliveries."""
    app, plan, planned = p.app, p.plan, p.planned
    if planned is None:
        return _create_audience_message(tx, app, plan)
    now = tx.now()
    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    templates = insert_templates(tx, message_id, p.templates)
    status = _initial_status(now, plan.send_at, planned)
    _insert_message(tx, app, plan, message_id, code, status, len(planned), None)
    ids = write_deliveries(tx, message_id, planned, templates, app_id=app.id)
    return Written(code, message_id, ids)


def _plan_explicit(tx: Tx, app: App, plan: MessagePlan, now: int) -> Planned:
    """The deliveries of an explicit ``devices`` list, planned."""
    assert plan.targeting.devices is not None
    targets = explicit_targets(tx, app, plan.targeting.devices)
    # every other targeting given narrows the explicit devices (their entries still get
    # a tracking code, and a trail that says why nothing was sent)
    known = [dev.id for _, dev in targets if dev is not None]
    left_out = _left_out(tx, app, plan.targeting, known)
    return plan_deliveries(now, plan.send_at, plan.local_time, targets, plan.notification, left_out)


def _initial_status(now: int, send_at: int, planned: Planned) -> MessageStatus:
    if planned.first_due is None:
        return MessageStatus.DONE  # nothing to send: every delivery (if any) already ended
    return MessageStatus.SCHEDULED if planned.first_due > now else MessageStatus.PENDING


def audience_filter(
    tx: Tx,
    app: App,
    platforms: Sequence[int] | None,
    users: Sequence[str] | None,
    selection: Node | None,
    *,
    after: int | None = None,
) -> tuple[list[str], list[Any]]:
    """The conditions (over ``devices d``) and parameters of a message's audience in
    ``app``: its platforms, users and selection, all narrowing; with ``after``, only
    devices with a greater id (the selection bounds its tag probes by it too)."""
    where = ["d.app_id = ?"]
    params: list[Any] = [app.id]
    if selection is not None:
        selected, more = audience_where(tx, app, selection, after=after)
        where.append(selected)
        params.extend(more)
    elif after is not None:
        where.append("d.id > ?")
        params.append(after)
    if platforms:
        where.append(f"d.device_type IN ({','.join('?' * len(platforms))})")
        params.extend(platforms)
    if users:
        where.append(f"d.user_id IN ({','.join('?' * len(users))})")
        params.extend(users)
    return where, params


def _left_out(tx: Tx, app: App, t: Targeting, device_ids: Sequence[int]) -> set[int]:
    """Those of ``device_ids`` that the targeting besides ``devices`` leaves out."""
    if not device_ids or (t.platforms is None and t.users is None and t.selection is None):
        return set()
    where, params = audience_filter(tx, app, t.platforms, t.users, t.selection)
    unique = list(dict.fromkeys(device_ids))
    kept: set[int] = set()
    for start in range(0, len(unique), 500):
        part = unique[start : start + 500]
        ids = tx.column(
            f"SELECT d.id FROM devices d WHERE {' AND '.join(where)}"
            f" AND d.id IN ({','.join('?' * len(part))})",
            [*params, *part],
        )
        kept.update(map(int, ids))
    return set(unique) - kept


def _create_audience_message(tx: Tx, app: App, plan: MessagePlan) -> Written:
    """Record the message and its targeting, and the job that will expand it.

    No device is read here: the ``EXPAND`` job walks the audience in short
    transactions of its own (``store/expansion.py``), so a message to a large
    audience never holds the writer for long.
    """
    now = tx.now()
    (message_id,) = tx.new_ids("messages", 1)
    code = codes.message_code()
    status = MessageStatus.SCHEDULED if plan.send_at > now else MessageStatus.PENDING
    _insert_message(tx, app, plan, message_id, code, status, 0, 0)
    jobs.enqueue(
        tx,
        kind=EXPAND,
        account=None,
        params=ExpandParams(message_id=message_id),
        run_at=now,
        message_id=message_id,
        app_id=app.id,
    )
    return Written(code, message_id, [])


def _insert_message(
    tx: Tx,
    app: App,
    plan: MessagePlan,
    message_id: int,
    code: str,
    status: MessageStatus,
    deliveries: int,
    expand_after: int | None,
) -> None:
    """The message row; ``expand_after`` is the expansion's cursor (None: no expansion)."""
    t = plan.targeting
    targeting = None
    if t.devices is None:
        targeting = dumps(AudienceTargeting(t.platforms, t.users, t.selection))
    tx.run(
        "INSERT INTO messages (id, code, app_id, campaign, notification, send_at, status,"
        " deliveries, created_at, targeting, local_time, expand_after)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            code,
            app.id,
            plan.campaign,
            dumps(plan.notification),
            plan.send_at,
            status.value,
            deliveries,
            tx.now(),
            targeting,
            int(plan.local_time),
            expand_after,
        ),
    )


class AudienceTargeting(msgspec.Struct, frozen=True, omit_defaults=True):
    """An audience message's targeting as kept with it (``messages.targeting``, JSON)."""

    platforms: tuple[int, ...] | None = None
    users: tuple[str, ...] | None = None
    selection: Node | None = None


class Template(NamedTuple):
    """A payload template as written (``template_rows``): a ``payloads`` row's columns."""

    platform: int
    language: str | None
    #: JSON text
    body: str
    options: str


def template_rows(notification: dict[str, Any], keys: Sequence[TemplateKey]) -> list[Template]:
    """The payload templates of ``keys`` built (no I/O)."""
    rows: list[Template] = []
    for platform, language in keys:
        tpl = build_template(notification, platform_of(platform) or Platform.IOS, language)
        rows.append(Template(platform, language, dumps(tpl.body), dumps(tpl.options)))
    return rows


def insert_templates(
    tx: Tx,
    message_id: int,
    rows: Sequence[Template],
    templates: dict[TemplateKey, int] | None = None,
) -> dict[TemplateKey, int]:
    """Write built templates of a message; ``templates`` (the message's own so far, by
    key) with their ids added."""
    templates = {} if templates is None else templates
    if not rows:
        return templates
    ids = tx.new_ids("payloads", len(rows))
    for pid, row in zip(ids, rows, strict=True):
        templates[(row.platform, row.language)] = pid
    tx.many(
        "INSERT INTO payloads (id, message_id, platform, language, body, options)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(pid, message_id, *row) for pid, row in zip(ids, rows, strict=True)],
    )
    return templates


def ensure_templates(
    tx: Tx,
    message_id: int,
    notification: dict[str, Any],
    keys: Sequence[TemplateKey],
    templates: dict[TemplateKey, int],
) -> dict[TemplateKey, int]:
    """Add to ``templates`` (the message's own so far) those of ``keys`` it lacks."""
    missing = [key for key in dict.fromkeys(keys) if key not in templates]
    return insert_templates(tx, message_id, template_rows(notification, missing), templates)


def message_templates(tx: Tx, message_id: int) -> dict[TemplateKey, int]:
    """The payload templates a message has so far."""
    return {
        (r.platform, r.language): r.id
        for r in tx.all_as(
            _PayloadKey,
            "SELECT id, platform, language FROM payloads WHERE message_id = ?",
            (message_id,),
        )
    }


class _PayloadKey(NamedTuple):
    id: int
    platform: int
    language: str | None


class Planned(msgspec.Struct):
    """The deliveries of a set of targets, decided before any id is given (no I/O),
    column by column as the ``deliveries`` row takes them.

    Planning costs as much as writing; it is done before the write transaction, so
    the writer is held only for the writing (which zips the columns with the ids).
    """

    #: Per target: the index of its delivery (repeats of one device share one).
    slots: list[int]
    #: The template keys met, first mention first.
    keys: list[TemplateKey]
    #: Per delivery: its device (None: an unknown entry), its template as an index
    #: into ``keys`` (-1: none), the entry as the sender gave it (hwid or push token),
    #: the hwid, user id, platform, payload hash (``p``), state and when it is due.
    device_ids: list[int | None]
    key_index: list[int]
    entries: list[str]
    hwids: list[str]
    user_ids: list[str | None]
    platforms: list[int]
    hashes: list[str | None]
    states: list[int]
    dues: list[int]
    #: (index, description, platform) of each delivery that ends ``failed`` at once.
    failed: list[tuple[int, str, int]]
    #: The indexes of the deliveries to send.
    live: list[int]
    #: When the earliest live delivery is due (None: nothing to send).
    first_due: int | None
    #: The (user id, device id) pairs the deliveries carry that ``user_devices`` did not
    #: hold when the devices were read, distinct (what lookups by user go through).
    users: list[tuple[str, int]]

    def __len__(self) -> int:
        return len(self.entries)


def plan_deliveries(
    now: int,
    send_at: int,
    local_time: bool,
    targets: Sequence[Target],
    notification: dict[str, Any],
    left_out: AbstractSet[int] = frozenset(),
) -> Planned:
    """One delivery per distinct device (or per distinct unknown entry) of ``targets``.

    Devices that cannot receive (unsubscribed, no push token), devices in
    ``left_out`` (ids the message's other targeting excludes) and unknown
    entries get a delivery that is ``failed`` at once; the rest wait for the
    dispatcher, from ``send_at`` (or, with ``local_time``, from that wall-clock
    time in each device's zone, and not before ``now``).
    """
    wanted_languages = languages(notification)
    if not local_time:
        fast = _plan_known(now, send_at, targets, wanted_languages, left_out)
        if fast is not None:
            return fast
    seen: dict[tuple[str, Any], int] = {}
    slots: list[int] = []
    unique: list[Target] = []
    for entry, dev in targets:
        who = ("d", dev.id) if dev is not None else ("e", entry)
        if who in seen:
            slots.append(seen[who])
            continue
        seen[who] = len(unique)
        slots.append(len(unique))
        unique.append((entry, dev))
    p = Planned(slots, [], [], [], [], [], [], [], [], [], [], [], [], None, [])
    keys: dict[TemplateKey, int] = {}
    hashes = codes.payload_hashes(len(unique))
    users: dict[tuple[str, int], None] = {}
    first_due: int | None = None
    for i, (phash, (entry, dev)) in enumerate(zip(hashes, unique, strict=True)):
        p.entries.append(entry)
        if dev is None:
            p.device_ids.append(None)
            p.key_index.append(-1)
            p.hwids.append(entry)
            p.user_ids.append(None)
            p.platforms.append(0)
            p.hashes.append(None)
            p.states.append(_FAILED)
            p.dues.append(now)
            p.failed.append((i, DESC_UNKNOWN_DEVICE, 0))
            continue
        platform = dev.device_type
        key = (platform, _language_key(dev.language, wanted_languages))
        k = keys.get(key)
        if k is None:
            k = keys[key] = len(keys)
        due = send_at
        if local_time:
            due = max(now, local_to_utc(send_at, dev.timezone, dev.tz_name))
        refusal = None if dev.subscribed and dev.push_token else DESC_UNSUBSCRIBED
        if dev.id in left_out:
            refusal = DESC_NOT_IN_AUDIENCE
        p.device_ids.append(dev.id)
        p.key_index.append(k)
        p.hwids.append(dev.hwid)
        p.user_ids.append(dev.user_id)
        p.platforms.append(platform)
        p.hashes.append(phash)
        p.dues.append(due)
        if dev.user_id is not None and not dev.paired:
            users[(dev.user_id, dev.id)] = None
        if refusal is None:
            p.states.append(_CREATED)
            p.live.append(i)
            first_due = due if first_due is None or due < first_due else first_due
        else:
            p.states.append(_FAILED)
            p.failed.append((i, refusal, platform))
    p.keys = list(keys)
    p.first_due = first_due
    p.users = sorted(users)
    return p


#: Columns of ``Device`` rows (itemgetters: mapped over every device, no Python per row).
_ID, _HWID, _TYPE, _LANGUAGE, _USER, _PAIRED = (
    itemgetter(Device._fields.index(name))
    for name in ("id", "hwid", "device_type", "language", "user_id", "paired")
)


def _plan_known(
    now: int,
    send_at: int,
    targets: Sequence[Target],
    wanted_languages: frozenset[str],
    left_out: AbstractSet[int],
) -> Planned | None:
    """``plan_deliveries`` for the common case, column by column (no Python per delivery
    beyond a few comprehensions): every target a known device, each once, all due at
    ``send_at``. None when that is not the case."""
    devs = [dev for _, dev in targets]
    if None in devs:
        return None
    known = cast(list[Device], devs)
    ids = list(map(_ID, known))
    n = len(ids)
    if len(set(ids)) != n:
        return None
    platforms = list(map(_TYPE, known))
    key_list: list[TemplateKey]
    if wanted_languages:
        key_list = [
            (platform, _language_key(language, wanted_languages))
            for platform, language in zip(platforms, map(_LANGUAGE, known), strict=True)
        ]
    else:
        key_list = [(platform, None) for platform in platforms]
    index = {key: i for i, key in enumerate(dict.fromkeys(key_list))}
    user_ids = list(map(_USER, known))
    states = [_CREATED] * n
    failed: list[tuple[int, str, int]] = []
    for i, dev in enumerate(known):
        if dev.id in left_out:
            failed.append((i, DESC_NOT_IN_AUDIENCE, dev.device_type))
        elif not (dev.subscribed and dev.push_token):
            failed.append((i, DESC_UNSUBSCRIBED, dev.device_type))
    for i, _, _ in failed:
        states[i] = _FAILED
    if failed:
        refused = {i for i, _, _ in failed}
        live = [i for i in range(n) if i not in refused]
    else:
        live = list(range(n))
    return Planned(
        slots=list(range(n)),
        keys=list(index),
        device_ids=cast(list[int | None], ids),
        key_index=list(map(index.__getitem__, key_list)),
        entries=[entry for entry, _ in targets],
        hwids=list(map(_HWID, known)),
        user_ids=user_ids,
        platforms=platforms,
        hashes=cast(list[str | None], codes.payload_hashes(n)),
        states=states,
        dues=[send_at] * n,
        failed=failed,
        live=live,
        first_due=send_at if live else None,
        users=sorted(
            {
                (u, d)
                for u, d, paired in zip(user_ids, ids, map(_PAIRED, known), strict=True)
                if u is not None and not paired
            }
        ),
    )


def write_deliveries(
    tx: Tx, message_id: int, planned: Planned, templates: dict[TemplateKey, int], *, app_id: int
) -> list[int]:
    """Write planned deliveries (``templates`` has every key; each row carries its
    ``created`` status: ``created_at``), the ``failed`` events and counters of those
    that end at once, and the dispatch jobs that will send the live ones (of the
    message's application ``app_id``). Returns the deliveries' ids, in the plan's
    order."""
    n = len(planned)
    if not n:
        return []
    ids = tx.new_ids("deliveries", n)
    now = tx.now()  # the deliveries' ``created`` (counted nowhere)
    payload_ids: list[int | None] = [templates[key] for key in planned.keys]
    payload_ids.append(None)  # key index -1: none
    tx.many(
        "INSERT INTO deliveries (id, message_id, device_id, payload_id,"
        " target_id, hwid, user_id, platform, hash, state, next_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        # the rows are zipped from the plan's columns (no Python per row here)
        zip(
            ids,
            repeat(message_id, n),
            planned.device_ids,
            map(payload_ids.__getitem__, planned.key_index),
            planned.entries,
            planned.hwids,
            planned.user_ids,
            planned.platforms,
            planned.hashes,
            planned.states,
            planned.dues,
            repeat(now, n),
            strict=True,
        ),
    )
    if planned.users:
        # the user ids deliveries carry, by device: what lookups by user_id go through
        # (a probe per pair, a write only for a pair not met before)
        pairs = planned.users
        for start in range(0, len(pairs), 500):  # one statement per 500 (not one per pair)
            part = pairs[start : start + 500]
            tx.run(
                "INSERT INTO user_devices (user_id, device_id) VALUES"
                f" {','.join(['(?, ?)'] * len(part))} ON CONFLICT (user_id, device_id) DO NOTHING",
                [v for pair in part for v in pair],
            )
    append_events(
        tx,
        [(ids[i], Status.FAILED, why, message_id, platform) for i, why, platform in planned.failed],
    )
    if planned.first_due is not None:
        live = [ids[i] for i in planned.live]
        _enqueue_dispatch(tx, message_id, app_id, live, planned.first_due)
    return ids


def languages(notification: dict[str, Any]) -> frozenset[str]:
    keys: set[str] = set()
    for field in ("content", "title", "subtitle"):
        value = notification.get(field)
        if isinstance(value, dict):
            keys.update(value)
    return frozenset(keys)


def _language_key(device_language: str | None, wanted: frozenset[str]) -> str | None:
    """The language a device's template is built for (None: the default text)."""
    if device_language and device_language in wanted:
        return device_language
    return None


def _enqueue_dispatch(
    tx: Tx, message_id: int, app_id: int, delivery_ids: Sequence[int], run_at: int
) -> None:
    """The dispatch jobs of a message's deliveries, a range of ``DISPATCH_CHUNK`` each,
    as jobs of the message's account (claims are fair between accounts); each carries
    the message's application."""
    if not delivery_ids:
        return
    now = tx.now()
    rows = []
    for start in range(0, len(delivery_ids), DISPATCH_CHUNK):
        part = delivery_ids[start : start + DISPATCH_CHUNK]
        params = DispatchParams(message_id=message_id, first=part[0], last=part[-1], app_id=app_id)
        rows.append(
            (codes.request_id(), JobKind.DISPATCH, encode(params), jobs.PENDING, run_at,
             now, now, message_id, message_id)
        )  # fmt: skip
    tx.many(
        "INSERT INTO jobs (request_id, kind, account_id, params, state, run_at, created_at,"
        " updated_at, message_id) SELECT ?, ?, a.account_id, ?, ?, ?, ?, ?, ?"
        " FROM messages m JOIN applications a ON a.id = m.app_id WHERE m.id = ?",
        rows,
    )


def delete_message(tx: Tx, account: str, apps: frozenset[str] | None, code: str) -> str:
    """Cancel a message: what is not yet sent ends ``failed``/``Cancelled``.

    The message row changes first: that stops its expansion (each expansion
    step is guarded by the row, see ``store/expansion.py``) and, on
    PostgreSQL, waits for a step in progress, so the deliveries and jobs
    cancelled below include everything any step wrote.
    """
    row = tx.one_as(
        _MessageOf,
        "SELECT m.id, m.status, a.code AS app_code FROM messages m"
        " JOIN applications a ON a.id = m.app_id JOIN accounts acc ON acc.id = a.account_id"
        " WHERE m.code = ? AND acc.name = ?",
        (code, account),
    )
    if row is None:
        raise ConflictError("message not found")
    if apps is not None and row.app_code not in apps:
        raise AccessError(f"message {code} belongs to an application the token may not use")
    message_id = row.id
    won = tx.scalar(
        "UPDATE messages SET status = 'cancelled', expand_after = NULL WHERE id = ?"
        " AND status NOT IN ('done', 'cancelled') RETURNING status",
        (message_id,),
    )
    if won is None:  # it ended meanwhile (status was read before the row was ours)
        ended = tx.scalar("SELECT status FROM messages WHERE id = ?", (message_id,))
        raise ConflictError(f"message is already {ended if ended is not None else row.status}")
    # Only the rows this UPDATE won: a dispatcher may mark some sent meanwhile.
    pending = sorted(
        tx.all_as(
            _Cancelled,
            "UPDATE deliveries SET state = ? WHERE message_id = ? AND state = ?"
            " RETURNING id, platform",
            (_FAILED, message_id, _CREATED),
        )
    )
    append_events(
        tx, [(d.id, Status.FAILED, DESC_CANCELLED, message_id, d.platform) for d in pending]
    )
    tx.run(
        "UPDATE jobs SET state = 'cancelled', updated_at = ? WHERE message_id = ?"
        " AND kind IN ('dispatch', ?) AND state IN ('pending', 'running')",
        (tx.now(), message_id, EXPAND),
    )
    return MessageStatus.CANCELLED


class _MessageOf(NamedTuple):
    """A message and its application's code, as deleteMessage finds it."""

    id: int
    status: str
    app_code: str


class _Cancelled(NamedTuple):
    """A delivery deleteMessage cancelled."""

    id: int
    platform: int


# -- reading the trail --------------------------------------------------------------------


#: Positions in the trail are (ts, key): a delivery's ``created`` (its row's
#: ``created_at``) has its delivery id as key, an event its id plus this, so at one
#: instant ``created`` comes first, as it was written first.
EVENT_KEY = 1 << 62
