"""dispatch-apns's fallback baseline: a bare HTTP/2 client loop against the local APNs server.

The same client and limits as the APNs gateway (``pushtrack.delivery._http``,
one connection, ``streams`` requests in flight), the same headers (one ES256
provider token) and payloads of the same shape. Used when nginx cannot be had;
run as its own process:

    echo SETTINGS_JSON | python -m bench.apns_bare TOTAL DEVICES STREAMS

prints ``{"seconds": …}`` for TOTAL requests after one to open the connection.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import jwt
import msgspec
import uvloop

from pushtrack.delivery._http import Client


async def bare(settings: dict[str, str], total: int, devices: int, streams: int) -> float:
    """Seconds for a bare HTTP/2 loop to post ``total`` notifications with the same limits."""
    token = jwt.encode(
        {"iss": settings["team_id"], "iat": int(time.time())},
        settings["key"],
        algorithm="ES256",
        headers={"kid": settings["key_id"]},
    )
    headers = {
        "authorization": f"bearer {token}",
        "content-type": "application/json",
        "apns-topic": settings["topic"],
        "apns-push-type": "alert",
        "apns-priority": "10",
    }
    encoder = msgspec.json.Encoder(order="sorted")
    slots = asyncio.Semaphore(streams)
    failures: list[str] = []
    client = Client(ca_file=settings["ca_file"])
    base = settings["base_url"].rstrip("/")
    try:

        async def one(i: int) -> None:
            body = encoder.encode(
                {
                    "aps": {"alert": "Flash sale", "sound": ""},
                    "md": {"mid": 1 + i // 1000, "user_id": f"user-{i % devices}"},
                    "p": uuid.uuid4().hex[:11],
                    "pw_msg": "1",
                }
            )
            async with slots:
                resp = await client.post(
                    f"{base}/3/device/{i % devices:064x}", headers=headers, content=body
                )
            if resp.status_code != 200:
                failures.append(f"{resp.status_code} {resp.text}")

        await one(0)  # the connection, as the worker's first batch opens it
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        seconds = time.perf_counter() - start
    finally:
        await client.aclose()
    if failures:
        raise RuntimeError(f"{len(failures)} bare APNs requests failed: {failures[0]}")
    return seconds


def main() -> None:
    total, devices, streams = (int(a) for a in sys.argv[1:4])
    settings = json.loads(sys.stdin.read())
    seconds = uvloop.run(bare(settings, total, devices, streams))
    sys.stdout.write(json.dumps({"seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()
