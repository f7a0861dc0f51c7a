"""Local, protocol-faithful gateway servers for tests: APNs, FCM HTTP v1, Web Push.

Each runs in a background thread on 127.0.0.1 (an ephemeral port), speaks
HTTP/2 over TLS with a certificate from a throw-away CA (``LocalTLS``), checks
credentials and request shape the way the real service does, answers with the
real status codes and bodies, and records what it received. Use them as
context managers::

    with LocalTLS() as tls, ApnsServer(tls) as apns:
        ...  # point a gateway at apns.url, trusting tls.ca_file
"""

from __future__ import annotations

import os
import ssl
import tempfile

import trustme


class LocalTLS:
    """A throw-away certificate authority, and a server certificate for 127.0.0.1."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._cert = self.ca.issue_cert("127.0.0.1", "localhost")
        fd, self.ca_file = tempfile.mkstemp(prefix="pushtrack-test-ca-", suffix=".pem")
        os.close(fd)
        self.ca.cert_pem.write_to_path(self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        context.set_alpn_protocols(["h2"])
        return context

    def close(self) -> None:
        if os.path.exists(self.ca_file):
            os.unlink(self.ca_file)

    def __enter__(self) -> LocalTLS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


from tests.gateways.apns_server import ApnsServer  # noqa: E402
from tests.gateways.fcm_server import FcmServer  # noqa: E402
from tests.gateways.webpush_server import WebPushServer  # noqa: E402

__all__ = ["ApnsServer", "FcmServer", "LocalTLS", "WebPushServer"]
