"""A simulated gateway for development, demos and load tests: nothing leaves the process.

Each notification is accepted, refused or deferred at the configured rates, with
the reasons the real gateway of its platform gives (APNs, FCM or Web Push), and
every description says "(sandbox)" so that no one mistakes it for a real
delivery. With a ``seed`` the same batches get the same outcomes. The whole
batch waits ``latency_ms`` once, like a round trip over one multiplexed connection.
"""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from pushtrack.delivery.base import Gateway, Notification, Outcome, Verdict
from pushtrack.domain.payload import ANDROID_LIKE, APPLE, BROWSERS
from pushtrack.domain.platforms import Platform

LABEL = " (sandbox)"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    #: Shares of notifications failed for good and deferred; the rest are delivered.
    failure_rate: float = 0.0
    retry_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int | None = None
    #: Seconds a deferred notification asks to wait (Retry-After), if any.
    retry_after: float | None = None

    @property
    def acceptance_rate(self) -> float:
        return max(0.0, 1.0 - self.failure_rate - self.retry_rate)

    def __post_init__(self) -> None:
        for name in ("failure_rate", "retry_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.failure_rate + self.retry_rate > 1.0 + 1e-9:
            raise ValueError("failure_rate + retry_rate must not exceed 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")


class _Reason(NamedTuple):
    weight: float
    reason: str
    unsubscribe: bool = False


_Family = tuple[tuple[_Reason, ...], tuple[_Reason, ...]]

#: (failures, retries) per gateway family, weighted roughly as seen in production.
_APNS: _Family = (
    (
        _Reason(5, "Unregistered", True),
        _Reason(3, "BadDeviceToken"),
        _Reason(1, "DeviceTokenNotForTopic"),
    ),
    (
        _Reason(3, "ServiceUnavailable"),
        _Reason(2, "TooManyRequests"),
        _Reason(1, "InternalServerError"),
    ),
)
_FCM: _Family = (
    (
        _Reason(5, "UNREGISTERED", True),
        _Reason(3, "INVALID_ARGUMENT"),
        _Reason(1, "SENDER_ID_MISMATCH"),
    ),
    (_Reason(3, "UNAVAILABLE"), _Reason(2, "QUOTA_EXCEEDED"), _Reason(1, "INTERNAL")),
)
_WEB: _Family = (
    (_Reason(5, "Gone", True), _Reason(2, "NotFound", True), _Reason(1, "Forbidden")),
    (_Reason(3, "TooManyRequests"), _Reason(2, "ServerError")),
)
_FAMILY: dict[Platform, _Family] = {
    **dict.fromkeys(APPLE, _APNS),
    **dict.fromkeys(ANDROID_LIKE, _FCM),
    **dict.fromkeys(BROWSERS, _WEB),
}


class _Picker:
    """Draws one of a few weighted reasons from a uniform number in [0, 1)."""

    def __init__(self, reasons: tuple[_Reason, ...]) -> None:
        total = sum(r.weight for r in reasons)
        self.bounds = [w / total for w in accumulate(r.weight for r in reasons)][:-1]
        self.reasons = reasons

    def pick(self, u: float) -> _Reason:
        return self.reasons[bisect_right(self.bounds, u)]


class SandboxGateway(Gateway):
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._random = random.Random(self.config.seed)
        self._failed_below = self.config.failure_rate
        self._retry_below = self.config.failure_rate + self.config.retry_rate
        self._pickers = {
            family: (_Picker(family[0]), _Picker(family[1])) for family in (_APNS, _FCM, _WEB)
        }
        self._sent = 0

    async def send(self, batch: Sequence[Notification]) -> list[Outcome]:
        if self.config.latency_ms and batch:
            await asyncio.sleep(self.config.latency_ms / 1000)
        draw = self._random.random
        outcomes = []
        for n in batch:
            u = draw()
            if u >= self._retry_below:
                self._sent += 1
                outcomes.append(
                    Outcome(
                        n.delivery_id,
                        Verdict.DELIVERED,
                        "Success" + LABEL,
                        gateway_id=f"sandbox-{self._sent}",
                    )
                )
                continue
            # Platforms no real gateway serves here fail like APNs devices.
            failures, retries = self._pickers[_FAMILY.get(n.platform, _APNS)]
            if u < self._failed_below:
                reason = failures.pick(u / self._failed_below)
                outcomes.append(
                    Outcome(
                        n.delivery_id,
                        Verdict.FAILED,
                        reason.reason + LABEL,
                        unsubscribe=reason.unsubscribe,
                        reason=reason.reason,
                    )
                )
            else:
                span = self._retry_below - self._failed_below
                reason = retries.pick((u - self._failed_below) / span)
                outcomes.append(
                    Outcome(
                        n.delivery_id,
                        Verdict.RETRY,
                        reason.reason + LABEL,
                        retry_after=self.config.retry_after,
                        reason=reason.reason,
                    )
                )
        return outcomes
