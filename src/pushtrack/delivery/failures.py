"""The failure class of a gateway's outcome (``domain/failures.py`` names the classes).

Decided here and only here, from the outcome each gateway module maps its answers
to (verdict, unsubscribe, reason): the dispatcher stores the class with the event that
records the outcome (and, while a delivery is retried, with the delivery), so
everything that reads the trail (getMessageLog, the event rows others build on)
shows the same one.
"""

from __future__ import annotations

from pushtrack.delivery.base import Outcome, Verdict
from pushtrack.domain.failures import FailureClass

__all__ = ["FailureClass", "classify"]


_C = FailureClass

#: Gateway reasons of permanent refusals that do not unsubscribe → class, per gateway
#: kind: APNs ``reason``, FCM ``errorCode`` (or RPC status), the Web Push gateway's names.
_APNS: dict[str, FailureClass] = {
    "BadDeviceToken": _C.TOKEN_INVALID,  # often a token of the other APNs environment
    "MissingDeviceToken": _C.TOKEN_INVALID,
    "DeviceTokenNotForTopic": _C.TOKEN_INVALID,
    "BadCollapseId": _C.PAYLOAD,
    "BadExpirationDate": _C.PAYLOAD,
    "BadMessageId": _C.PAYLOAD,
    "BadPriority": _C.PAYLOAD,
    "DuplicateHeaders": _C.PAYLOAD,
    "IdleTimeout": _C.PAYLOAD,
    "InvalidPushType": _C.PAYLOAD,
    "PayloadEmpty": _C.PAYLOAD,
    "BadRequest": _C.PAYLOAD,
    "PayloadTooLarge": _C.PAYLOAD,
    "BadTopic": _C.CONFIGURATION,
    "MissingTopic": _C.CONFIGURATION,
    "TopicDisallowed": _C.CONFIGURATION,
    "BadPath": _C.CONFIGURATION,
    "MethodNotAllowed": _C.CONFIGURATION,
    "Forbidden": _C.CREDENTIALS,
    "BadCertificate": _C.CREDENTIALS,
    "BadCertificateEnvironment": _C.CREDENTIALS,
    "ExpiredProviderToken": _C.CREDENTIALS,
    "InvalidProviderToken": _C.CREDENTIALS,
    "MissingProviderToken": _C.CREDENTIALS,
    "Unregistered": _C.TOKEN_DEAD,  # dead since before the device's newer token
    "ExpiredToken": _C.TOKEN_DEAD,
}
_FCM: dict[str, FailureClass] = {
    "INVALID_ARGUMENT": _C.PAYLOAD,
    "SENDER_ID_MISMATCH": _C.TOKEN_INVALID,
    "THIRD_PARTY_AUTH_ERROR": _C.CREDENTIALS,
    "PERMISSION_DENIED": _C.CREDENTIALS,
    "UNAUTHENTICATED": _C.CREDENTIALS,
    "NOT_FOUND": _C.CONFIGURATION,
    "UNREGISTERED": _C.TOKEN_DEAD,
    "UNSPECIFIED_ERROR": _C.UNKNOWN,
}
_WEBPUSH: dict[str, FailureClass] = {
    "BadRequest": _C.PAYLOAD,
    "PayloadTooLarge": _C.PAYLOAD,
    "Unauthorized": _C.CREDENTIALS,
    # the subscription was made with another VAPID key than the gateway's
    "Forbidden": _C.TOKEN_INVALID,
    "InvalidSubscription": _C.TOKEN_INVALID,
    "EndpointNotAllowed": _C.CONFIGURATION,
    "NotFound": _C.TOKEN_DEAD,
    "Gone": _C.TOKEN_DEAD,
}
_BY_KIND: dict[str, dict[str, FailureClass]] = {
    "apns": _APNS,
    "fcm": _FCM,
    "webpush": _WEBPUSH,
    # the sandbox answers with each family's reasons (its Web Push ones are APNs's too)
    "sandbox": {**_WEBPUSH, **_FCM, **_APNS},
}


def classify(outcome: Outcome, kind: str) -> FailureClass | None:
    """The class of an outcome of a gateway of ``kind``; None for an accepted one."""
    if outcome.verdict is Verdict.DELIVERED:
        return None
    if outcome.verdict is Verdict.RETRY:
        return _C.TRANSIENT
    if outcome.verdict is Verdict.CREDENTIALS:
        return _C.CREDENTIALS
    if outcome.unsubscribe:
        return _C.TOKEN_DEAD
    if outcome.reason == "OutcomeUnknown":
        return _C.OUTCOME_UNKNOWN
    if outcome.reason is None:
        return _C.UNKNOWN
    return _BY_KIND.get(kind, {}).get(outcome.reason, _C.UNKNOWN)
