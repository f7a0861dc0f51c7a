"""The dispatcher: runs ``dispatch`` jobs, one id range of a message's deliveries each.

For a range it loads what is due, marks it ``sent`` (before any byte reaches a
gateway, so a crash can only resend what was in flight, never what ended),
hands each platform's share to that platform's gateway, and records the
outcomes. Gateway outcome → status mapping happens here and only here. A job
cancelled mid-batch (the worker stops, or lost the lease) finishes the requests
already written and records them first, writing no new one (``_send_through``):
only a crash can leave a written request whose answer nobody recorded.

Such a request (a worker killed mid-batch, or one stalled past its lease while
another took the job over) is found by the next run: every delivery handed to a
gateway is marked in flight by the UPDATE that marks its batch ``sent``, and the
UPDATE that records its outcome clears the mark (store/dispatch.py). A due
delivery still marked may have reached the gateway. An APNs one is sent again
with the same ``apns-id`` (derived from the delivery: the same notification to
Apple), a sandbox one is sent again (nothing leaves the process); an FCM or Web
Push one is not sent again, so it can never reach the device twice: it ends
``failed``, ``OutcomeUnknown`` (``IN_FLIGHT_UNKNOWN``; docs/api.md §7.3).

Retries are bounded by time, not by a count (``RetryPolicy``; docs/api.md §7):
a transient refusal is tried again after the gateway's Retry-After, else after
at least a minute for a 429 and an exponential backoff (to 15 minutes) for a
5xx or a lost connection, until the message's TTL (or, without one, the retry
window) has passed since the message's send time; the delivery then ends
``failed`` saying so. A refusal of the application's credentials fails
nothing: the application's gateway for that platform is paused (ERROR log,
``metrics.GATEWAY_PAUSES``, ``pushtrack app gateways``), its deliveries wait,
and one sender probes it every ``probe_seconds``; new gateway settings lift
the pause. A message's ``send_rate`` is honoured by the store handing out send
slots (``start_batch``); the job sends a burst, waits for the next slot, and
goes on.

A job's first batch reads what the job needs of its message and its application's
gateway settings in the transaction that starts it (``JobContext``; the job names its
application, ``DispatchParams.app_id``, or, made before it did, takes the message's):
the settings it sends with are those its refusals and pauses were decided on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from pushtrack import metrics
from pushtrack.config import Settings
from pushtrack.delivery import _http
from pushtrack.delivery._http import positive_ttl
from pushtrack.delivery.base import (
    NOT_SENT,
    Gateway,
    GatewayError,
    Notification,
    Outcome,
    Verdict,
)
from pushtrack.delivery.failures import FailureClass, classify
from pushtrack.delivery.registry import gateway_for, parse_config
from pushtrack.delivery.webpush import WebPushConfig
from pushtrack.domain.jobs import DispatchParams
from pushtrack.domain.payload import render
from pushtrack.domain.platforms import Platform, name_of
from pushtrack.domain.status import DESC_NO_GATEWAY, DESC_NOT_SUPPORTED, MessageStatus, Status
from pushtrack.jobs.runner import Done, JobResult, Later
from pushtrack.sealing import Sealer, unseal
from pushtrack.store import Store
from pushtrack.store.dispatch import Batch, DeadToken, Due, Ended, Gateways, JobContext, Pause
from pushtrack.store.jobs import Job

#: The sending log keeps the name it always had (log filters and alerts match it).
log = logging.getLogger("pushtrack.delivery")

#: Device types a gateway here can serve.
SERVED = frozenset(
    {
        Platform.IOS,
        Platform.ANDROID,
        Platform.MACOS,
        Platform.AMAZON,
        Platform.SAFARI,
        Platform.CHROME,
        Platform.FIREFOX,
        Platform.HUAWEI,
    }
)


#: A throttled job waits in place for its next send slot when it is this close
#: (seconds); further off, it hands the job back until then.
PACE_SECONDS = 2.0

#: Gateway kinds whose deliveries found in flight after a crash are sent again: APNs
#: (the same ``apns-id``) and the sandbox. The others end ``failed``, outcome unknown.
RESENT_IN_FLIGHT = frozenset({"apns", "sandbox"})

#: The description of a delivery found in flight of a gateway not in ``RESENT_IN_FLIGHT``.
IN_FLIGHT_UNKNOWN = (
    "Outcome unknown: the worker stopped while sending it (it died, or another worker"
    " took its job over) before the gateway's answer was recorded; not sent again so"
    " that it is never delivered twice"
)

#: A local-time message reaches its last time zone this long after its send time
#: (UTC-12 is 12 hours behind; two more for summer time and odd offsets).
LOCAL_TIME_SPREAD_US = 14 * 3600 * 1_000_000


def _base(context: JobContext) -> int:
    """When a job's limits (TTL, retry window) count from: its message's send time, or
    for one sent at each device's local time, when the last zone reaches it."""
    return context.send_time + (LOCAL_TIME_SPREAD_US if context.local_time else 0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often a refused delivery is tried again (docs/api.md §7)."""

    #: First wait after a 5xx or a lost connection; doubles with each try (with jitter).
    backoff_seconds: float = 15.0
    #: The longest such wait (Apple asks for minutes of back-off after a 5xx).
    max_backoff_seconds: float = 900.0
    #: The least wait after a 429 that names no Retry-After (FCM's quota refills each minute).
    throttled_seconds: float = 60.0
    #: How long after the message's send time a delivery without a TTL is still tried.
    window_seconds: float = 86400.0
    #: How often one sender tries a gateway paused for refused credentials.
    probe_seconds: float = 60.0
    #: An optional cap on tries per delivery; 0: none (time alone bounds retries).
    max_attempts: int = 0

    @classmethod
    def of(cls, settings: Settings) -> RetryPolicy:
        return cls(
            backoff_seconds=settings.retry_backoff_seconds,
            max_backoff_seconds=settings.retry_max_backoff_seconds,
            throttled_seconds=settings.retry_throttled_seconds,
            window_seconds=settings.retry_window_seconds,
            probe_seconds=settings.gateway_probe_seconds,
            max_attempts=settings.max_attempts,
        )

    def delay(self, outcome: Outcome, attempts: int) -> float:
        """Seconds to wait before the next try of a delivery tried ``attempts`` times."""
        if outcome.retry_after is not None:
            return max(0.0, outcome.retry_after)
        backoff = self.backoff_seconds * 2.0 ** min(attempts, 40)
        backoff = min(self.max_backoff_seconds, backoff * (0.5 + random.random()))  # jitter
        if outcome.http_status == 429:
            # throttled without a time named: at least that long, spread over a quarter more
            return max(backoff, self.throttled_seconds * (1 + random.random() / 4))
        return backoff


#: (app, platform, kind) whose ``pushtrack_gateway_paused`` this process set to 1 (read
#: here instead of collecting the metrics registry for each batch).
_PAUSED_SHOWN: set[tuple[int, int, str]] = set()


def refusal(platform: int, gateways: Gateways) -> str | None:
    """Why deliveries to ``platform`` cannot be sent with the application's ``gateways``
    (they end ``failed`` saying so), or None."""
    if platform not in SERVED:
        return f"{DESC_NOT_SUPPORTED} {name_of(platform)}"
    if platform not in gateways:
        return f"{DESC_NO_GATEWAY} {name_of(platform)}"
    return None


class _Limit(msgspec.Struct, frozen=True):
    """When a delivery stops being tried (µs) and what sets that time."""

    deadline: int
    what: str


class Dispatcher:
    def __init__(
        self,
        store: Store,
        *,
        policy: RetryPolicy | None = None,
        sealer: Sealer | None = None,
        outbound_allow: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy()
        #: opens the gateway private keys stored sealed (None: only plain ones are usable)
        self.sealer = sealer
        #: the setting ``outbound_allow`` (``outbound.parse_allow``): where Web Push
        #: endpoints may point besides the public push services
        self.outbound_allow = outbound_allow
        self._gateways: dict[tuple[int, int], tuple[int, Gateway]] = {}
        self._lock = asyncio.Lock()

    async def handle(self, job: Job) -> JobResult:
        p = job.params_as(DispatchParams)
        message_id, first, last = p.message_id, p.first, p.last
        # The job's context (its message's send time and rate, its application's gateway
        # settings) is read by its first batch, in the transaction that starts it; the
        # later batches of this run go on with it.
        context: JobContext | None = None
        while True:
            start = self.store.dispatch.start_batch(
                message_id, first, last, refusal, context,
                app_id=p.app_id, probe_seconds=self.policy.probe_seconds,
            )  # fmt: skip
            starting = asyncio.ensure_future(start)
            try:
                batch = await asyncio.shield(starting)
            except asyncio.CancelledError:
                await self._hand_back(starting, context)
                raise
            if batch is None:
                return Done({"message": "gone"})
            if batch.message_status == MessageStatus.CANCELLED:
                return Done({"message": MessageStatus.CANCELLED.value})
            if context is None:
                context = batch.context
                assert context is not None  # the first batch of a message still there
            app_id, settings = context.app_id, context.gateways
            base = _base(context)
            retry_at: int | None = None
            if batch.due or batch.held:
                outcome = await self._send_through(
                    app_id, settings, batch, base, finish=batch.next_due is None
                )
                if isinstance(outcome, int):
                    retry_at = outcome
                elif outcome is not None:
                    return Done({"message": outcome})
            waiting = [t for t in (retry_at, batch.next_due) if t is not None]
            if not waiting:
                return Done({"message": await self.store.dispatch.finish_message(message_id)})
            wait = (min(waiting) - self.store.clock()) / 1e6
            if batch.throttled and wait <= PACE_SECONDS:
                # send_rate holds the rest back for a moment: wait here, keeping the job
                await asyncio.sleep(max(0.0, wait))
                continue
            return Later(min(waiting))

    async def _hand_back(
        self, starting: asyncio.Future[Batch | None], context: JobContext | None
    ) -> None:
        """The job was cancelled (its worker stops) while a batch was starting: that
        transaction goes on, and may commit the batch's deliveries ``sent`` and in flight
        with no request written for them (a later run would end them outcome unknown).
        So it is waited for, and its deliveries are handed back unsent, due again (the
        gateways write nothing for a drain already stopping: ``NOT_SENT``)."""
        try:
            batch = await starting
            context = context or (batch.context if batch is not None else None)
            if batch is None or not batch.due or context is None:
                return
            drain = _http.Drain()
            drain.stopping = True
            await self._send(
                context.app_id, context.gateways, batch, _base(context), finish=False, drain=drain
            )
        except Exception:  # stopping: what stays in flight ends outcome unknown, as before
            log.exception("stopping: a batch that was starting could not be handed back")

    async def _send_through(
        self,
        app_id: int,
        settings: Gateways,
        batch: Batch,
        base: int,
        *,
        finish: bool,
    ) -> int | str | None:
        """``_send``, carried through when the job is cancelled meanwhile.

        The worker cancels its jobs when it stops (or loses a job's lease). A batch's
        deliveries are ``sent`` once it starts, and a run of the job loads those without
        an outcome again: cut short here, the requests already written would go out a
        second time. So the batch goes on: the requests written are answered (each
        within the gateway's deadline) and recorded; the others are not written any
        more (``_http.Drain``) and stay due, for the job's next run. Then the job ends
        cancelled.
        """
        drain = _http.Drain()
        sending = asyncio.ensure_future(
            self._send(app_id, settings, batch, base, finish=finish, drain=drain)
        )
        try:
            return await asyncio.shield(sending)
        except asyncio.CancelledError:
            drain.stopping = True
            log.info(
                "stopping: message %s's requests in flight are answered first", batch.message_id
            )
            with contextlib.suppress(Exception):
                await asyncio.shield(sending)
            raise

    def _limit(self, base: int, options: dict[str, Any]) -> _Limit:
        ttl = positive_ttl(options)
        if ttl is not None:
            return _Limit(base + ttl * 1_000_000, f"the message's TTL of {ttl} s")
        window = self.policy.window_seconds
        return _Limit(base + int(window * 1_000_000), f"the retry window of {window:g} s")

    async def _send(
        self,
        app_id: int,
        settings: Gateways,
        batch: Batch,
        base: int,
        *,
        finish: bool,
        drain: _http.Drain | None = None,
    ) -> int | str | None:
        """Send a batch's due deliveries and record the outcomes.

        Returns when the earliest retry is due, or (with ``finish`` and nothing
        to retry) the message's status after recording. With ``drain``, the requests
        follow it (``_send_through``); one never written for it is not recorded.
        """
        if drain is not None:
            _http.drain_into(drain)  # this task's context: the gateways' requests see it
        by_platform: dict[int, list[Due]] = defaultdict(list)
        for d in batch.due:
            by_platform[d.platform].append(d)
        groups = list(by_platform.items())
        limits = {pid: self._limit(base, options) for pid, (_, options) in batch.payloads.items()}
        answers = await asyncio.gather(
            *(
                self._send_group(
                    app_id,
                    platform,
                    settings[platform],
                    batch.pauses.get(platform),
                    batch.shown_id,
                    ds,
                    batch.payloads,
                    limits,
                )
                for platform, ds in groups
            )
        )
        # Outcomes in groups of one status, description and failure class (one statement
        # each when recorded); the rare ones that need a decision go through ``_result``.
        ended: dict[tuple[Status, str, str | None], tuple[list[int], list[str | None]]] = {}
        retries: dict[tuple[int, str, str | None], list[int]] = defaultdict(list)
        dead_tokens: list[DeadToken] = []
        now = self.store.clock()
        delivered, failed = Verdict.DELIVERED, Verdict.FAILED
        unsent: list[int] = []
        for (platform, ds), (outcomes, wait_until) in zip(groups, answers, strict=True):
            kind = settings[platform][0]
            counts: Counter[str] = Counter()
            for d, outcome in zip(ds, outcomes, strict=True):
                verdict = outcome.verdict
                if outcome.reason == NOT_SENT:
                    unsent.append(d.delivery_id)  # never written (the sender stops): due
                    continue
                if verdict is delivered:
                    key: tuple[Status, str, str | None] = (
                        Status.DELIVERED, outcome.description, None
                    )  # fmt: skip
                    counts["delivered"] += 1
                elif verdict is failed:
                    found = classify(outcome, kind)
                    key = (Status.FAILED, outcome.description, found and found.value)
                    counts["failed"] += 1
                else:
                    status, description, retry_at, cls = self._result(
                        d, outcome, now, limits[d.payload_id], wait_until, kind
                    )
                    if status is None:
                        retries[(retry_at or now, description, cls)].append(d.delivery_id)
                        counts["retry"] += 1
                        continue
                    key = (status, description, cls)
                    counts[status.label] += 1
                group = ended.get(key)
                if group is None:
                    group = ended[key] = ([], [])
                group[0].append(d.delivery_id)
                group[1].append(outcome.gateway_id)
                if outcome.unsubscribe:
                    reason = outcome.reason or outcome.description
                    dead_tokens.append(
                        DeadToken(d.push_token, outcome.dead_since, d.delivery_id, reason)
                    )
            platform_name = name_of(platform)
            for outcome_name, n in counts.items():
                metrics.DELIVERY_OUTCOMES.labels(outcome_name, platform_name, kind).inc(n)
        groups_ended = [
            Ended(st, desc, cls, ids, gids) for (st, desc, cls), (ids, gids) in ended.items()
        ]
        groups_ended += self._held_out_of_time(batch, settings, limits, now)
        message_status = await self.store.dispatch.record(
            batch.message_id,
            app_id,
            groups_ended,
            retries,
            dead_tokens,
            finish=finish and not retries and not unsent,
            unsent=unsent,
        )
        if unsent:
            return now
        return min(when for when, _, _ in retries) if retries else message_status

    def _held_out_of_time(
        self,
        batch: Batch,
        settings: Gateways,
        limits: dict[int, _Limit],
        now: int,
    ) -> list[Ended]:
        """The deliveries a paused gateway held back whose time runs out before the next
        probe: they end ``failed`` saying so (the rest just wait; nothing was tried)."""
        if not batch.held:
            return []
        probe = int(self.policy.probe_seconds * 1_000_000)
        out: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for d in batch.held:
            pause = batch.pauses[d.platform]
            at = pause.since + probe
            outcome = Outcome(d.delivery_id, Verdict.CREDENTIALS, f"Gateway paused: {pause.reason}")
            kind = settings[d.platform][0]
            status, description, _, cls = self._result(
                d, outcome, now, limits[d.payload_id], at if at > now else now + probe, kind
            )
            if status is not None:
                out[(description, cls)].append(d.delivery_id)
        return [
            Ended(Status.FAILED, description, cls, ids, None, tried=False)
            for (description, cls), ids in out.items()
        ]

    async def _send_group(
        self,
        app_id: int,
        platform: int,
        setting: tuple[str, dict[str, Any], int],
        pause: Pause | None,
        shown_id: int,
        due: Sequence[Due],
        payloads: dict[int, tuple[dict[str, Any], dict[str, Any]]],
        limits: dict[int, _Limit],
    ) -> tuple[list[Outcome], int]:
        """One platform's outcomes, and when deliveries refused for credentials try again.

        ``pause``: the platform's gateway is paused and this batch took the turn to
        probe it (``start_batch`` held back the deliveries of paused gateways it did not
        probe). Deliveries an earlier run left in flight end ``OutcomeUnknown`` unsent
        unless the gateway's kind is in ``RESENT_IN_FLIGHT``.
        """
        kind, _, version = setting
        probe = int(self.policy.probe_seconds * 1_000_000)
        ordered = due
        unknown: dict[int, Outcome] = {}
        if kind not in RESENT_IN_FLIGHT and any(d.in_flight for d in due):
            unknown = {
                d.delivery_id: Outcome(
                    d.delivery_id, Verdict.FAILED, IN_FLIGHT_UNKNOWN, reason="OutcomeUnknown"
                )
                for d in due
                if d.in_flight
            }
            log.warning(
                "%d deliveries of a message to %s were in flight when their worker stopped:"
                " they end failed (outcome unknown), not sent again",
                len(unknown),
                kind,
            )
            due = [d for d in due if not d.in_flight]
            if not due:
                return list(unknown.values()), self.store.clock() + probe
        target = Platform(platform)
        now = self.store.clock()
        # per payload: its body, its options, and those of a retry (what is left of its TTL)
        shapes: dict[int, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        for pid, (body, options) in payloads.items():
            again = options
            if positive_ttl(options):
                left = (limits[pid].deadline - now) // 1_000_000
                again = {**options, "ttl": max(1, left)}
            shapes[pid] = (body, options, again)
        notifications: list[Notification] = []
        append = notifications.append
        for d in due:
            body, options, again = shapes[d.payload_id]
            append(
                Notification(
                    d.delivery_id,
                    d.tracking_code,
                    target,
                    d.push_token,
                    render(body, d.hash, shown_id, d.user_id),
                    again if d.attempts else options,
                    d.web_keys,
                )
            )
        try:
            gateway = await self._gateway(app_id, platform, setting)
            outcomes = await gateway.send(notifications)
        except _http.NotSent as exc:  # stopping before a request the whole batch needs
            outcomes = [
                Outcome(n.delivery_id, Verdict.RETRY, str(exc), reason=NOT_SENT)
                for n in notifications
            ]
        except (GatewayError, ValueError) as exc:
            if isinstance(exc, ValueError) or exc.credentials:
                verdict = Verdict.CREDENTIALS  # unusable settings: pause until they change
            else:
                verdict = Verdict.RETRY if exc.retryable else Verdict.FAILED
                log.error("gateway %s for app %s, %s: %s", kind, app_id, name_of(platform), exc)
            outcomes = [
                Outcome(n.delivery_id, verdict, f"Gateway error: {exc}") for n in notifications
            ]
        if len(outcomes) != len(notifications):
            raise RuntimeError(
                f"{kind} gateway answered {len(outcomes)} outcomes"
                f" for {len(notifications)} notifications"
            )
        labels = {"app": app_id, "platform": name_of(platform), "kind": kind}
        refused = [o for o in outcomes if o.verdict is Verdict.CREDENTIALS]
        # (none reached the gateway when the sender stopped first: nothing learnt of it)
        reached = any(o.reason != NOT_SENT for o in outcomes)
        if refused and not any(o.verdict is Verdict.DELIVERED for o in outcomes):
            reason = refused[0].reason or refused[0].description
            if await self.store.dispatch.pause_gateway(app_id, platform, version, reason):
                log.error(
                    "PAUSED the %s gateway of app %s for %s: it refused the credentials (%s)."
                    " Its deliveries wait; new settings (`pushtrack app set-gateway`) resume"
                    " it, and so does a probe (every %g s) that the gateway accepts.",
                    kind,
                    app_id,
                    name_of(platform),
                    reason,
                    self.policy.probe_seconds,
                )
                metrics.GATEWAY_PAUSES.labels(**labels, reason=reason).inc()
            metrics.GATEWAY_PAUSED.labels(**labels).set(1)
            _PAUSED_SHOWN.add((app_id, platform, kind))
        elif reached and (pause is not None or (app_id, platform, kind) in _PAUSED_SHOWN):
            # a probe went through, or new settings lifted the pause meanwhile
            if pause is not None and await self.store.dispatch.resume_gateway(app_id, platform):
                log.warning(
                    "resumed the %s gateway of app %s for %s: its credentials work again",
                    kind,
                    app_id,
                    name_of(platform),
                )
            metrics.GATEWAY_PAUSED.labels(**labels).set(0)
            _PAUSED_SHOWN.discard((app_id, platform, kind))
        if unknown:  # back in the batch's order
            sent = iter(outcomes)
            outcomes = [
                unknown[d.delivery_id] if d.delivery_id in unknown else next(sent) for d in ordered
            ]
        return outcomes, self.store.clock() + probe

    def _result(
        self, d: Due, outcome: Outcome, now: int, limit: _Limit, wait_until: int, kind: str
    ) -> tuple[Status | None, str, int | None, str | None]:
        """(status to end with, or None to retry; description; when to retry; failure
        class) of an outcome that neither delivered nor failed the delivery outright."""
        found = classify(outcome, kind)
        cls = found.value if found is not None else None  # stored as plain text
        if outcome.verdict is Verdict.DELIVERED:
            return Status.DELIVERED, outcome.description, None, None
        if outcome.verdict is Verdict.FAILED:
            return Status.FAILED, outcome.description, None, cls
        attempt = d.attempts + 1
        if outcome.verdict is Verdict.CREDENTIALS:
            # not the device's fault, nor the gateway's: wait for the credentials
            if wait_until >= limit.deadline:
                metrics.DELIVERY_GIVE_UPS.labels(kind=kind).inc()
                return (
                    Status.FAILED,
                    f"{outcome.description} (gave up while the gateway was paused:"
                    f" {limit.what} ends before the next try)",
                    None,
                    cls,
                )
            return None, outcome.description, wait_until, cls
        if self.policy.max_attempts and attempt >= self.policy.max_attempts:
            return (
                Status.FAILED,
                f"{outcome.description} (gave up after {attempt} attempts)",
                None,
                FailureClass.EXPIRED.value,
            )
        retry_at = now + int(self.policy.delay(outcome, d.attempts) * 1_000_000)
        if retry_at >= limit.deadline:
            metrics.DELIVERY_GIVE_UPS.labels(kind=kind).inc()
            return (
                Status.FAILED,
                f"{outcome.description} (gave up after {attempt} attempts:"
                f" {limit.what} ends before the next try)",
                None,
                FailureClass.EXPIRED.value,
            )
        metrics.DELIVERY_RETRIES.labels(kind=kind, status=outcome.http_status or "none").inc()
        return None, outcome.description, retry_at, cls

    async def _gateway(
        self, app_id: int, platform: int, setting: tuple[str, dict[str, Any], int]
    ) -> Gateway:
        kind, config, version = setting
        async with self._lock:
            cached = self._gateways.get((app_id, platform))
            if cached is not None and cached[0] == version:
                return cached[1]
            if cached is not None:
                await cached[1].aclose()
            typed = parse_config(kind, unseal(kind, config, self.sealer))
            if isinstance(typed, WebPushConfig) and self.outbound_allow:
                typed = dataclasses.replace(typed, outbound_allow=self.outbound_allow)
            gateway = gateway_for(typed)
            self._gateways[(app_id, platform)] = (version, gateway)
            return gateway

    async def aclose(self) -> None:
        async with self._lock:
            for _, gateway in self._gateways.values():
                try:
                    await gateway.aclose()
                except Exception:
                    log.exception("closing a gateway failed")
            self._gateways.clear()
