"""One event of the delivery trail as others are told of it.

``delivery_event`` turns a row of the trail (``LogRow``, as ``message_log`` reads
it) into the fields every consumer of outcomes shows: webhooks, the event stream,
the CLI's timeline; getMessageLog's rows (``api/message_log.py`` ``LogEntry``, encoded in
one pass for speed) carry the same fields under the names of its answer.
"""

from __future__ import annotations

import msgspec

from pushtrack.domain.platforms import name_of
from pushtrack.domain.timeutil import to_wire
from pushtrack.store.base import LogRow


class DeliveryEvent(msgspec.Struct, frozen=True):
    """One status of one delivery, with what the gateway and the retries said."""

    #: created, sent, delivered, failed, opened, confirmed
    status: str
    tracking_code: str
    message_code: str
    application_code: str
    hwid: str
    user_id: str | None
    #: The platform's name (``iOS``, ``Android``, ...)
    platform: str
    description: str
    #: ``YYYY-MM-DD HH:MM:SS`` UTC
    timestamp: str
    #: The gateway's id for the notification (apns-id, FCM message name, Web Push
    #: Location), on the event that recorded the gateway's answer.
    gateway_id: str | None
    #: How many times the gateway has been tried for the delivery so far.
    attempt: int
    #: What kind of failure (domain/failures.py), on failures and retried deliveries.
    failure_class: str | None


def delivery_event(row: LogRow) -> DeliveryEvent:
    """The event a trail row records."""
    return DeliveryEvent(
        status=row.status.label,
        tracking_code=row.tracking_code,
        message_code=row.message_code,
        application_code=row.application_code,
        hwid=row.hwid,
        user_id=row.user_id,
        platform=name_of(row.platform),
        description=row.description,
        timestamp=to_wire(row.ts),
        gateway_id=row.gateway_id,
        attempt=row.attempts,
        failure_class=row.failure_class,
    )
