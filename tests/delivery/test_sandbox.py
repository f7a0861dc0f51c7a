"""The simulated gateway: rates, realistic reasons per platform, determinism, speed."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from pushtrack.delivery.base import Notification, Verdict
from pushtrack.delivery.registry import build_gateway
from pushtrack.delivery.sandbox import SandboxConfig, SandboxGateway
from pushtrack.domain.platforms import Platform

pytestmark = pytest.mark.anyio

REASONS = {
    Platform.IOS: {
        "Unregistered",
        "BadDeviceToken",
        "DeviceTokenNotForTopic",
        "ServiceUnavailable",
        "TooManyRequests",
        "InternalServerError",
    },
    Platform.ANDROID: {
        "UNREGISTERED",
        "INVALID_ARGUMENT",
        "SENDER_ID_MISMATCH",
        "UNAVAILABLE",
        "QUOTA_EXCEEDED",
        "INTERNAL",
    },
    Platform.CHROME: {"Gone", "NotFound", "Forbidden", "TooManyRequests", "ServerError"},
}
DEAD_TOKEN = {"Unregistered", "UNREGISTERED", "Gone", "NotFound"}


def batch(size: int, platform: Platform = Platform.IOS, start: int = 1) -> list[Notification]:
    payload = {"aps": {"alert": "hi"}, "p": "x", "md": {}, "pw_msg": "1"}
    return [
        Notification(i, f"T-{i}", platform, f"token-{i}", payload)
        for i in range(start, start + size)
    ]


async def test_everything_delivered_by_default() -> None:
    async with SandboxGateway() as gateway:
        outcomes = await gateway.send(batch(50))
    assert [o.delivery_id for o in outcomes] == list(range(1, 51))
    assert {o.verdict for o in outcomes} == {Verdict.DELIVERED}
    assert {o.description for o in outcomes} == {"Success (sandbox)"}
    assert len({o.gateway_id for o in outcomes}) == 50


@pytest.mark.parametrize("platform", list(REASONS))
async def test_rates_and_reasons(platform: Platform) -> None:
    gateway = SandboxGateway(
        SandboxConfig(failure_rate=0.2, retry_rate=0.1, seed=7, retry_after=5.0)
    )
    outcomes = await gateway.send(batch(20_000, platform))
    verdicts = Counter(o.verdict for o in outcomes)
    assert verdicts[Verdict.FAILED] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert verdicts[Verdict.RETRY] / 20_000 == pytest.approx(0.1, abs=0.015)
    assert verdicts[Verdict.DELIVERED] / 20_000 == pytest.approx(0.7, abs=0.015)
    for o in outcomes:
        assert o.description.endswith(" (sandbox)")
        if o.verdict is Verdict.DELIVERED:
            continue
        assert o.reason in REASONS[platform]
        assert o.description == f"{o.reason} (sandbox)"
        assert o.unsubscribe is (o.reason in DEAD_TOKEN and o.verdict is Verdict.FAILED)
        assert o.retry_after == (5.0 if o.verdict is Verdict.RETRY else None)
    reasons = Counter(o.reason for o in outcomes if o.reason)
    assert set(reasons) == REASONS[platform]  # every reason turns up


async def test_same_seed_same_outcomes() -> None:
    config = SandboxConfig(failure_rate=0.3, retry_rate=0.3, seed=42)
    first = await SandboxGateway(config).send(batch(500, Platform.ANDROID))
    again = await SandboxGateway(config).send(batch(500, Platform.ANDROID))
    other = await SandboxGateway(SandboxConfig(failure_rate=0.3, retry_rate=0.3, seed=43)).send(
        batch(500, Platform.ANDROID)
    )
    assert first == again
    assert first != other


async def test_all_failing() -> None:
    outcomes = await SandboxGateway(SandboxConfig(failure_rate=1.0)).send(batch(100))
    assert {o.verdict for o in outcomes} == {Verdict.FAILED}


async def test_latency_is_paid_once_per_batch() -> None:
    gateway = SandboxGateway(SandboxConfig(latency_ms=50, failure_rate=0.1, retry_rate=0.1))
    started = time.perf_counter()
    outcomes = await gateway.send(batch(1000))
    elapsed = time.perf_counter() - started
    assert len(outcomes) == 1000
    # once for the batch, not once each (1000 x 50 ms would be 50 s); the upper bound
    # only catches per-notification sleeping, with room for a busy machine
    assert 0.05 <= elapsed < 5.0


async def test_fast() -> None:
    gateway = SandboxGateway(SandboxConfig(failure_rate=0.1, retry_rate=0.1, seed=1))
    notifications = batch(1000, Platform.CHROME)
    started = time.perf_counter()
    for _ in range(10):
        await gateway.send(notifications)
    per_notification = (time.perf_counter() - started) / 10_000
    assert per_notification < 50e-6  # well under a millisecond each


async def test_registry_settings() -> None:
    gateway = build_gateway("sandbox", {"acceptance_rate": 0.5, "retry_rate": 0.5, "seed": 3})
    assert isinstance(gateway, SandboxGateway)
    assert gateway.config.failure_rate == 0.0
    outcomes = await gateway.send(batch(1000))
    assert {o.verdict for o in outcomes} == {Verdict.DELIVERED, Verdict.RETRY}
