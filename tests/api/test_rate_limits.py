"""Rate limits are kept per authenticated caller: requests that do not authenticate
spend nobody's allowance, and no number of other callers resets a spent one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushtrack.api.auth import RateLimiter
from pushtrack.api.errors import RateLimitedError
from tests.support import service


def test_unauthenticated_requests_spend_no_callers_allowance(tmp_path: Path) -> None:
    with service(f"sqlite:///{tmp_path}/rl.db", rate_limit=0.5, rate_burst=2) as s:
        tokenless = s.new_app("tokenless", device_token_required=False)
        junk = (
            [
                # unknown tokens, in the body and in the header
                s.call("listTags", {"auth": f"junk-{i}", "application": s.app.code})
                for i in range(5)
            ]
            + [
                s.call(
                    "registerDevice",
                    {"application": s.app.code, "hwid": f"j{i}", "device_type": 1},
                    headers={"Authorization": f"Token junk-{i}"},
                )
                for i in range(5)
            ]
            + [
                # tokenless calls naming applications that do not exist (or need a token)
                s.call("registerDevice", {"application": app, "hwid": "j", "device_type": 1})
                for app in ["AAAAA-AAAAA", "BBBBB-BBBBB", s.app.code] * 2
            ]
        )
        assert {r.status_code for r in junk} == {401}
        # the callers that do authenticate still have their whole burst
        for _ in range(2):
            assert s.server("listTags")["status_code"] == 200
            assert s.device("registerDevice", hwid="d", device_type=1)["status_code"] == 200
            open_call = s.call(
                "registerDevice", {"application": tokenless.code, "hwid": "t", "device_type": 1}
            )
            assert open_call.json()["status_code"] == 200
        assert s.server("listTags")["status_code"] == 429


def test_a_spent_bucket_survives_many_other_callers() -> None:
    limiter = RateLimiter(rate=0.01, burst=1, max_keys=10)
    limiter.check("hot")
    with pytest.raises(RateLimitedError):
        limiter.check("hot")
    for i in range(1000):  # far more callers than the limiter keeps buckets for
        limiter.check(f"caller-{i}")
    with pytest.raises(RateLimitedError):
        limiter.check("hot")


def test_buckets_that_filled_up_again_are_forgotten() -> None:
    limiter = RateLimiter(rate=1e9, burst=1, max_keys=10)  # full again at once
    for i in range(1000):
        limiter.check(f"caller-{i}")
    assert len(limiter._buckets) <= 11
