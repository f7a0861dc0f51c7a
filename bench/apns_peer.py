"""The local APNs server (``tests/gateways/apns_server.py``) as a process of its own.

Prints one JSON line with what a gateway needs to reach it (URL, CA file,
signing key and ids), then serves until SIGINT or SIGTERM. What it received
is dropped every second so a long run does not grow without bound.

    PYTHONPATH=. python -m bench.apns_peer
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.gateways import ApnsServer, LocalTLS

KEY_ID = "BENCHKEY01"
TEAM_ID = "BENCHTEAM1"
TOPIC = "com.example.bench"


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with (
        LocalTLS() as tls,
        ApnsServer(
            tls, public_key=key.public_key(), key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC
        ) as server,
    ):
        info = {
            "base_url": server.url,
            "ca_file": tls.ca_file,
            "key": pem,
            "key_id": KEY_ID,
            "team_id": TEAM_ID,
            "topic": TOPIC,
        }
        sys.stdout.write("APNS " + json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            if server.errors:
                sys.stdout.write(f"handler errors: {server.errors[:3]!r}\n")
                sys.stdout.flush()
                server.errors.clear()
            server.received.clear()


if __name__ == "__main__":
    main()
