"""Tracking codes and shown message ids: derived from the store's ids under the server
secret, revealing neither the ids nor how many there are, and not forgeable."""

from __future__ import annotations

import itertools
import os

from hypothesis import given
from hypothesis import strategies as st

from pushtrack.domain import codes

KEY = bytes(range(32))


@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=50))
def test_tracking_codes_open_to_their_delivery(ids: list[int]) -> None:
    made = codes.tracking_codes_of(KEY, ids)
    assert [codes.tracking_delivery(KEY, c) for c in made] == ids
    assert all(codes.TRACKING_CODE_RE.match(c) for c in made)
    assert made[0] == codes.tracking_code(KEY, ids[0])


def test_codes_already_given_out_never_change() -> None:
    # codes clients hold (and stored trails reference) stay what they were when issued
    assert codes.tracking_codes_of(KEY, [0, 1, 1000, 2**32, 2**63 - 1]) == [
        "T-44D5ED6A-016187EF-E32E8286-501773D4",
        "T-0EB195ED-53A2FBFF-2C978145-2B2891C1",
        "T-79E3E760-E7153AEF-23ECE3A9-3DA33D01",
        "T-D49B129B-E280D74E-844724BB-51467A08",
        "T-7513CBD4-8E931651-D6F2EF67-B0AC5A6A",
    ]


def test_consecutive_deliveries_get_unrelated_codes_and_other_keys_open_none() -> None:
    first, second = codes.tracking_codes_of(KEY, [1000, 1001])
    assert sum(a == b for a, b in zip(first, second, strict=True)) < 12  # no shared prefix
    other = os.urandom(32)
    assert codes.tracking_delivery(other, first) is None
    # a made-up code of the right shape opens to nothing
    assert codes.tracking_delivery(KEY, "T-00000000-00000000-00000000-00000001") is None
    # codes from before sealed codes keep their shape and open to nothing here
    (legacy,) = codes.tracking_codes(1)
    assert codes.TRACKING_CODE_RE.match(legacy)
    assert codes.tracking_delivery(KEY, legacy) is None


@given(st.integers(min_value=0, max_value=2**52 - 1))
def test_shown_message_ids_round_trip_within_52_bits(message_id: int) -> None:
    shown = codes.shown_message_id(KEY, message_id)
    assert 0 <= shown < 2**52
    assert codes.stored_message_id(KEY, shown) == message_id


def test_shown_message_ids_do_not_count_up() -> None:
    shown = [codes.shown_message_id(KEY, i) for i in range(1, 101)]
    assert len(set(shown)) == 100
    steps = {b - a for a, b in itertools.pairwise(shown)}
    assert len(steps) > 90  # no constant stride to count messages by
    assert codes.stored_message_id(KEY, -1) is None
    assert codes.stored_message_id(KEY, 2**52) is None


def test_api_tokens_never_start_like_a_command_line_option() -> None:
    assert all(codes.secret_token()[0].isalnum() for _ in range(500))
