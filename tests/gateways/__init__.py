"""Local, protocol-faithful gateway servers for tests: APNs, FCM HTTP v1, Web Push.

Each runs in a background thread on 127.0.0.1 (an ephemeral port), speaks
HTTP/2 over TLS with a certificate from a throw-away CA (``LocalTLS``), checks
credentials and request shape the way the real service does, answers with the
real status codes and bodies, and records what it received. Use them as
context managers::

    with LocalTLS() as tls, WebPushServer(tls) as push:
        subscriber = push.subscribe()  # subscriber.token: the device's push token
        ...  # a webpush gateway with ca_file=tls.ca_file; then push.received

    with LocalTLS() as tls, ApnsServer(tls, public_key=key.public_key(), key_id=...,
                                       team_id=..., topic=...) as apns:
        ...  # an apns gateway with base_url=apns.url, ca_file=tls.ca_file

    with LocalTLS() as tls, FcmServer(tls) as fcm:
        ...  # an fcm gateway with service_account=fcm.service_account, base_url=fcm.url

In pytest, ``tests/delivery/conftest.py`` starts them once per session (per
xdist worker) as the fixtures ``apns_server``, ``fcm_server`` and
``webpush_server`` (reset before each test), with the matching gateway
settings in ``apns_settings``, ``fcm_settings`` and ``webpush_settings``.
"""

from __future__ import annotations

from tests.gateways._tls import LocalTLS
from tests.gateways.apns_server import ApnsServer
from tests.gateways.fcm_server import FcmServer
from tests.gateways.webpush_server import WebPushServer

__all__ = ["ApnsServer", "FcmServer", "LocalTLS", "WebPushServer"]
