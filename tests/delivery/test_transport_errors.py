"""``map_transport_errors``: the one place a request without an answer becomes an outcome
(or, for a request the whole batch needs, a GatewayError)."""

from __future__ import annotations

import ssl

import h11
import jh2.exceptions
import pytest

from pushtrack.delivery import _http
from pushtrack.delivery.base import GatewayError, Outcome, Verdict, map_transport_errors
from pushtrack.delivery.failures import FailureClass, classify


def mapped(exc: BaseException) -> Outcome:
    with map_transport_errors(7) as unanswered:
        raise exc
    return unanswered.outcome


def test_not_sent_is_retried() -> None:
    outcome = mapped(_http.ConnectError("cannot connect to https://h: refused"))
    assert (outcome.delivery_id, outcome.verdict, outcome.reason) == (
        7,
        Verdict.RETRY,
        "ConnectionError",
    )
    assert outcome.description == (
        "Connection error talking to the gateway: cannot connect to https://h: refused"
    )
    assert classify(outcome, "apns") is FailureClass.TRANSIENT


def test_deadline_before_writing_is_retried() -> None:
    outcome = mapped(_http.RequestTimeout("the gateway took no request before the deadline"))
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, "Timeout")


@pytest.mark.parametrize(
    "exc",
    [
        _http.RequestTimeout("no answer before the deadline", may_have_reached=True),
        _http.ConnectionLost("the gateway reset the stream (CANCEL)", may_have_reached=True),
        # foreign errors that got past the client: nothing says the request was not written
        ConnectionResetError(104, "Connection reset by peer"),
        ssl.SSLError("bad record mac"),
        TimeoutError(),
        h11.RemoteProtocolError("malformed response"),
        jh2.exceptions.ProtocolError("bad frame"),
    ],
)
def test_maybe_written_is_never_resent(exc: BaseException) -> None:
    outcome = mapped(exc)
    assert (outcome.verdict, outcome.reason) == (Verdict.FAILED, "OutcomeUnknown")
    assert outcome.description.startswith("Outcome unknown: the request may have reached")
    assert classify(outcome, "webpush") is FailureClass.OUTCOME_UNKNOWN


def test_other_errors_pass_through() -> None:
    with pytest.raises(ValueError, match="a bug"), map_transport_errors(7):
        raise ValueError("a bug")
    with pytest.raises(GatewayError), map_transport_errors(7):
        raise GatewayError("credentials refused", credentials=True)


def test_no_answer_with_an_answer() -> None:
    with map_transport_errors(7) as unanswered:
        pass
    with pytest.raises(AssertionError):
        unanswered.outcome  # noqa: B018


def test_batch_wide_request_raises_a_retryable_gateway_error() -> None:
    token_endpoint = map_transport_errors(None, what="FCM token endpoint")
    with pytest.raises(GatewayError) as caught, token_endpoint:
        raise _http.ConnectError("connecting to https://oauth2 timed out")
    assert str(caught.value) == (
        "FCM token endpoint unreachable: connecting to https://oauth2 timed out"
    )
    assert caught.value.retryable
    assert not caught.value.credentials
    token_endpoint = map_transport_errors(None, what="FCM token endpoint")
    with pytest.raises(GatewayError, match="unreachable: connection lost: "), token_endpoint:
        raise OSError("network is unreachable")
