"""Statuses: a delivery's (and the hourly counters they feed) and a message's."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Status(IntEnum):
    """The life of one notification to one device; the value orders the steps."""

    CREATED = 1
    SENT = 2
    DELIVERED = 3
    FAILED = 4
    OPENED = 5
    #: (ours) The device's own confirmation (messageDeliveryEvent), kept as a fact of its
    #: own beside the gateway's ``delivered``; never in the tracking-log export.
    CONFIRMED = 6

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        return self in (Status.DELIVERED, Status.FAILED)


BY_LABEL: dict[str, Status] = {s.label: s for s in Status}


class MessageStatus(StrEnum):
    """A message's stage, stored as its value in ``messages.status`` and shown as it is
    (messages:list, the dashboard, deleteMessage's refusal)."""

    #: Due now: its dispatch jobs (or its audience's expansion) are waiting.
    PENDING = "pending"
    #: Due later (``send_date``, or local time in a zone not yet reached).
    SCHEDULED = "scheduled"
    #: Its first batch went to the gateways.
    SENDING = "sending"
    #: Every delivery ended (or there was nothing to send).
    DONE = "done"
    #: deleteMessage: what was not yet sent ended ``failed``/``Cancelled``.
    CANCELLED = "cancelled"


#: The hourly counter column each status increments (created counts nowhere).
COUNTER_OF: dict[Status, str] = {
    Status.SENT: "sends",
    Status.DELIVERED: "deliveries",
    Status.FAILED: "errors",
    Status.OPENED: "opens",
    Status.CONFIRMED: "confirmed",
}

COUNTERS: tuple[str, ...] = (
    "sends",
    "deliveries",
    "opens",
    "inbox_opens",
    "unshowable_sends",
    "errors",
    "confirmed",
)

#: The counters Pushwoosh's own statistics name (messages:list, getMsgStats).
PUSHWOOSH_COUNTERS: tuple[str, ...] = COUNTERS[:-1]

#: Descriptions the service writes itself (gateways write their own reasons).
DESC_CREATED = "Created"
DESC_UNKNOWN_DEVICE = "Unknown device"
DESC_UNSUBSCRIBED = "Device unsubscribed"
#: An explicit device that the message's other targeting (platforms, users, tags) leaves out.
DESC_NOT_IN_AUDIENCE = "Not in the audience"
DESC_CANCELLED = "Cancelled"
DESC_OPENED = "Opened"
DESC_DEVICE_CONFIRMED = "Confirmed by device"
#: The dispatcher's refusals of a platform, followed by the platform's name.
DESC_NOT_SUPPORTED = "Platform not supported:"
DESC_NO_GATEWAY = "No gateway configured for"
