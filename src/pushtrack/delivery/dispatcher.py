"""The dispatcher: runs ``dispatch`` jobs, one id range of a message's deliveries each.

For a range it loads what is due, marks it ``sent`` (before any byte reaches a
gateway, so a crash can only resend what was in flight, never what ended),
hands each platform's share to that platform's gateway, and records the
outcomes. Transient refusals are retried with exponential backoff and jitter
(or after the gateway's Retry-After) up to ``max_attempts``, then end
``failed`` with the last reason. A message's ``send_rate`` is honoured by the
store handing out send slots (``start_batch``); the job sends a burst, waits
for the next slot, and goes on. Gateway outcome → status mapping happens here
and only here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pushtrack.delivery.base import Gateway, GatewayError, Notification, Outcome, Verdict
from pushtrack.delivery.registry import build_gateway
from pushtrack.domain.payload import render
from pushtrack.domain.platforms import Platform, name_of
from pushtrack.domain.status import Status
from pushtrack.jobs.runner import Done, Later
from pushtrack.jobs.runner import Outcome as JobOutcome
from pushtrack.store import Store
from pushtrack.store.dispatch import Batch, Due, Result
from pushtrack.store.jobs import Job

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


class Dispatcher:
    def __init__(
        self,
        store: Store,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 2.0,
        max_backoff_seconds: float = 300.0,
    ) -> None:
        self.store = store
        self.max_attempts = max_attempts
        self.backoff = backoff_seconds
        self.max_backoff = max_backoff_seconds
        self._gateways: dict[tuple[int, int], tuple[int, Gateway]] = {}
        self._lock = asyncio.Lock()

    async def handle(self, job: Job) -> JobOutcome:
        message_id = int(job.params["message_id"])
        first, last = int(job.params["first"]), int(job.params["last"])
        app_id = await self.store.dispatch.app_of(message_id)
        if app_id is None:
            return Done({"message": "gone"})
        settings = await self.store.dispatch.gateways(app_id)
        rate = await self.store.dispatch.send_rate(message_id)

        def refuse(platform: int) -> str | None:
            if platform not in SERVED:
                return f"Platform not supported: {name_of(platform)}"
            if platform not in settings:
                return f"No gateway configured for {name_of(platform)}"
            return None

        while True:
            batch = await self.store.dispatch.start_batch(message_id, first, last, refuse, rate)
            if batch is None:
                return Done({"message": "gone"})
            if batch.message_status == "cancelled":
                return Done({"message": "cancelled"})
            retry_at: int | None = None
            if batch.due:
                outcome = await self._send(app_id, settings, batch, finish=batch.next_due is None)
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

    async def _send(
        self,
        app_id: int,
        settings: dict[int, tuple[str, dict[str, Any], int]],
        batch: Batch,
        *,
        finish: bool,
    ) -> int | str | None:
        """Send a batch's due deliveries and record the outcomes.

        Returns when the earliest retry is due, or (with ``finish`` and nothing
        to retry) the message's status after recording.
        """
        by_platform: dict[int, list[Due]] = defaultdict(list)
        for d in batch.due:
            by_platform[d.platform].append(d)
        groups = list(by_platform.items())
        answers = await asyncio.gather(
            *(
                self._send_group(
                    app_id, platform, settings[platform], batch.message_id, ds, batch.payloads
                )
                for platform, ds in groups
            )
        )
        results: list[Result] = []
        dead_tokens: list[tuple[str, int | None]] = []
        now = self.store.clock()
        for (_, ds), outcomes in zip(groups, answers, strict=True):
            for d, outcome in zip(ds, outcomes, strict=True):
                results.append(self._result(d, outcome, now))
                if outcome.unsubscribe:
                    dead_tokens.append((d.push_token, outcome.dead_since))
        retries = [r.retry_at for r in results if r.retry_at is not None]
        platforms = {d.delivery_id: d.platform for d in batch.due}
        status = await self.store.dispatch.record(
            batch.message_id,
            app_id,
            platforms,
            results,
            dead_tokens,
            finish=finish and not retries,
        )
        return min(retries) if retries else status

    async def _send_group(
        self,
        app_id: int,
        platform: int,
        setting: tuple[str, dict[str, Any], int],
        message_id: int,
        due: Sequence[Due],
        payloads: dict[int, tuple[dict[str, Any], dict[str, Any]]],
    ) -> list[Outcome]:
        notifications = []
        target = Platform(platform)
        for d in due:
            body, options = payloads[d.payload_id]
            notifications.append(
                Notification(
                    delivery_id=d.delivery_id,
                    tracking_code=d.tracking_code,
                    platform=target,
                    push_token=d.push_token,
                    payload=render(body, d.hash, message_id, d.user_id),
                    options=options,
                    web_keys=d.web_keys,
                )
            )
        try:
            gateway = await self._gateway(app_id, platform, setting)
            outcomes = await gateway.send(notifications)
        except (GatewayError, ValueError) as exc:
            retryable = isinstance(exc, GatewayError) and exc.retryable
            log.error("gateway %s for app %s, %s: %s", setting[0], app_id, name_of(platform), exc)
            verdict = Verdict.RETRY if retryable else Verdict.FAILED
            return [Outcome(n.delivery_id, verdict, f"Gateway error: {exc}") for n in notifications]
        if len(outcomes) != len(notifications):
            raise RuntimeError(
                f"{setting[0]} gateway answered {len(outcomes)} outcomes"
                f" for {len(notifications)} notifications"
            )
        return outcomes

    def _result(self, d: Due, outcome: Outcome, now: int) -> Result:
        if outcome.verdict is Verdict.DELIVERED:
            return Result(d.delivery_id, Status.DELIVERED, outcome.description)
        if outcome.verdict is Verdict.FAILED:
            return Result(
                d.delivery_id, Status.FAILED, outcome.description, unsubscribe=outcome.unsubscribe
            )
        attempt = d.attempts + 1
        if attempt >= self.max_attempts:
            return Result(
                d.delivery_id,
                Status.FAILED,
                f"{outcome.description} (gave up after {attempt} attempts)",
            )
        if outcome.retry_after is not None:
            delay = max(0.0, outcome.retry_after)
        else:
            delay = min(self.max_backoff, self.backoff * 2**d.attempts)
            delay *= 0.5 + random.random()  # jitter: spread the retries of a burst
        return Result(
            d.delivery_id, None, outcome.description, retry_at=now + int(delay * 1_000_000)
        )

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
            gateway = build_gateway(kind, config)
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
