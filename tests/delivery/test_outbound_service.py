"""The outbound rule end to end: a browser subscription a device registers that points
into the service's own network (loopback, the cloud metadata address) ends ``failed``
with the reason and is never contacted, until the operator's ``outbound_allow`` names
it; the Web Push gateway's settings need not (the same rule as webhooks')."""

from __future__ import annotations

import json
from typing import Any

from pushtrack import config
from pushtrack.worker import build_worker
from tests.gateways import WebPushServer
from tests.support import Service, run

SETTINGS = {"max_attempts": 3, "retry_backoff_seconds": 0.05, "worker_lease_seconds": 5}
CHROME = 11


def _work(svc: Service, outbound_allow: str) -> None:
    settings = config.load(
        {"database": svc.store.url, **SETTINGS, "outbound_allow": outbound_allow}, env={}
    )
    run(build_worker(settings, svc.store, poll_seconds=0.05).run_until_idle(30))


def _send(svc: Service, hwid: str) -> str:
    out = svc.server("createMessage", notifications=[{"devices": [hwid], "content": "x"}])
    assert out["status_code"] == 200, out
    (code,) = out["response"]["TrackingCodes"]
    return str(code)


def _last(svc: Service, code: str) -> tuple[str, str]:
    rows = svc.log(tracking_code=code)
    return rows[-1]["action"], rows[-1]["description"]


def test_an_inward_subscription_is_refused_until_outbound_allow_names_it(
    svc: Service, webpush_server: WebPushServer, webpush_settings: dict[str, Any]
) -> None:
    # the gateway as an operator sets it up: the browsers' push services only
    gateway = {k: v for k, v in webpush_settings.items() if k != "endpoint_hosts"}
    run(svc.store.dispatch.set_gateway("default", svc.app.code, CHROME, "webpush", gateway))
    inward = webpush_server.subscribe()  # https://127.0.0.1:<port>/...
    metadata = {**json.loads(inward.token), "endpoint": "https://169.254.169.254/latest/x"}
    svc.register("inward", CHROME, push_token=inward.token)
    svc.register("metadata", CHROME, push_token=json.dumps(metadata))

    codes = {hwid: _send(svc, hwid) for hwid in ("inward", "metadata")}
    _work(svc, outbound_allow="")
    assert _last(svc, codes["inward"]) == (
        "failed",
        "Endpoint not allowed: endpoint host 127.0.0.1 is not a public address"
        " (setting outbound_allow)",
    )
    assert _last(svc, codes["metadata"]) == (
        "failed",
        "Endpoint not allowed: endpoint host 169.254.169.254 is not a public address"
        " (setting outbound_allow)",
    )
    assert webpush_server.received == []
    # the device keeps its subscription: the refusal is the service's, not the browser's
    assert svc.device("checkDevice", hwid="inward")["response"]["push_token_exist"] is True

    # named by the operator, the local push service is reached (and only it)
    again = _send(svc, "inward")
    still = _send(svc, "metadata")
    _work(svc, outbound_allow="127.0.0.1")
    assert _last(svc, again)[0] == "delivered"
    assert _last(svc, still)[0] == "failed"
    assert [r.subscriber for r in webpush_server.received] == [inward.id]
