"""Failure classes: what kind of failure a delivery met, so senders act without parsing
reasons (docs/api.md §6, ``failure_class``).

A gateway's answer is classed by ``delivery/failures.py`` when it is recorded; the
failures the service writes itself are classed here, by their fixed descriptions.
"""

from __future__ import annotations

import enum

from pushtrack.domain.status import (
    DESC_CANCELLED,
    DESC_NO_GATEWAY,
    DESC_NOT_IN_AUDIENCE,
    DESC_NOT_SUPPORTED,
    DESC_UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED,
    Status,
)


class FailureClass(enum.StrEnum):
    #: The gateway says the token is gone for good; the device was unsubscribed
    #: (APNs 410 Unregistered/ExpiredToken, FCM UNREGISTERED or an invalid registration
    #: token, Web Push 404/410).
    TOKEN_DEAD = "token_dead"
    #: The gateway refused this token without saying it is gone: malformed, of the other
    #: APNs environment, or of another app or sender (APNs BadDeviceToken,
    #: DeviceTokenNotForTopic, FCM SENDER_ID_MISMATCH, Web Push 403, a bad subscription).
    #: The device stays subscribed.
    TOKEN_INVALID = "token_invalid"
    #: The gateway was busy, throttled or unreachable: retried until the TTL or the retry
    #: window; a delivery still being retried carries this class.
    TRANSIENT = "transient"
    #: Retried for transient refusals until the message's TTL or the retry window ended.
    EXPIRED = "expired"
    #: The application's gateway credentials were refused (the gateway is paused).
    CREDENTIALS = "credentials"
    #: The notification itself was refused (too large, a bad option or header).
    PAYLOAD = "payload"
    #: The gateway settings do not fit (topic, path, project), or no gateway is set for
    #: the platform, or a Web Push endpoint is not allowed.
    CONFIGURATION = "configuration"
    #: The request may have reached the gateway but no answer came; not sent again.
    OUTCOME_UNKNOWN = "outcome_unknown"
    #: The message's entry matched no device of the application.
    UNKNOWN_DEVICE = "unknown_device"
    #: The device was unsubscribed before the delivery was sent.
    UNSUBSCRIBED = "unsubscribed"
    #: The message's other targeting leaves the explicit device out.
    NOT_IN_AUDIENCE = "not_in_audience"
    #: The message was deleted before the delivery was sent.
    CANCELLED = "cancelled"
    #: Anything else the gateway refused.
    UNKNOWN = "unknown"


_C = FailureClass


#: The failures the service writes itself (docs/api.md §5), by description.
_SERVICE: dict[str, FailureClass] = {
    DESC_UNKNOWN_DEVICE: _C.UNKNOWN_DEVICE,
    DESC_UNSUBSCRIBED: _C.UNSUBSCRIBED,
    DESC_NOT_IN_AUDIENCE: _C.NOT_IN_AUDIENCE,
    DESC_CANCELLED: _C.CANCELLED,
}
#: Description prefixes of the dispatcher's own refusals (no gateway for the platform).
_SERVICE_PREFIXES = (
    (DESC_NO_GATEWAY + " ", _C.CONFIGURATION),
    (DESC_NOT_SUPPORTED + " ", _C.CONFIGURATION),
)


def of_description(description: str) -> FailureClass | None:
    """The class of a failure the service wrote itself, by its description (None: not one)."""
    found = _SERVICE.get(description)
    if found is not None:
        return found
    for prefix, cls in _SERVICE_PREFIXES:
        if description.startswith(prefix):
            return cls
    return None


def class_of(status: Status, stored: str | None, description: str) -> str | None:
    """A trail event's class: the one stored with a gateway's answer, else that of a
    failure the service wrote (None for other events, and for a failure recorded
    before classes were kept)."""
    if stored is not None:
        return stored
    if status is Status.FAILED:
        found = of_description(description)
        return found.value if found is not None else None
    return None
