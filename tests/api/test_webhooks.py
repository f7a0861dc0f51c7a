"""(ours) The webhook methods and the event stream over HTTP: validation with the
field named, the outbound rule, the signing secret, a test event the receiver can
verify, an endpoint marked failing (``webhook list``, ``/metrics``), and
``GET /api/v2/events/stream`` resumed with ``Last-Event-ID``."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pushtrack.jobs.webhooks import sign
from pushtrack.sealing import new_key
from tests.delivery.test_webhooks import _work_until
from tests.gateways.webhook_receiver import Receiver, verify
from tests.support import Service, service


def _add(svc: Service, **fields: Any) -> Any:
    return svc.v2("webhooks/addWebhook", {"application": svc.app.code, **fields})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "url: url must be an https URL"),
        ({"url": "http://hooks.example.com/x"}, "url: url must be an https URL"),
        ({"url": "https://10.1.2.3/x"}, "url: url host 10.1.2.3 is not a public address"),
        ({"url": "https://[::1]:8443/x"}, "url: url host ::1 is not a public address"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url: url must not carry credentials"),
        ({"url": "https://hooks.example.com/", "statuses": ["bounced"]}, "statuses: unknown"),
        ({"url": "https://hooks.example.com/", "secret": "short"}, "secret"),
        ({"url": "https://hooks.example.com/", "colour": "red"}, "colour"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_field(
    shared: Service, fields: dict[str, Any], says: str
) -> None:
    svc = shared.fresh_account()
    resp = _add(svc, **fields)
    assert resp.status_code == 400, resp.text
    assert says in resp.text, resp.text
    assert svc.db.count_where("webhooks", f"app_id = {svc.app.id}") == 0


def test_a_host_name_resolving_to_a_private_address_is_never_connected_to(
    shared: Service,
) -> None:
    """A name is checked when connecting (the literal addresses above at once): one that
    resolves to the service's own network gets nothing, whatever listens there."""
    svc = shared.fresh_account()
    with Receiver() as inside:
        inside.start()
        url = f"https://localhost:{inside.port}/hook"
        made = _add(svc, url=url)
        assert made.status_code == 200, made.text
        tried = svc.v2("webhooks/testWebhook", {"application": svc.app.code, "url": url}).json()
        assert tried["ok"] is False
        assert "url host localhost resolves to a non-public address" in tried["error"]
        assert inside.requests == 0


def test_add_list_test_and_remove(shared: Service) -> None:
    svc = shared.fresh_account()
    resp = _add(svc, url="https://hooks.example.com/a", statuses=["delivered", "failed"])
    assert resp.status_code == 200, resp.text
    made = resp.json()
    assert made["secret"].startswith("whsec_")
    assert made["statuses"] == ["delivered", "failed"]
    again = _add(svc, url="https://hooks.example.com/a")
    assert again.status_code == 400
    assert "already a webhook" in again.text
    own = _add(svc, url="https://hooks.example.com/b", secret="s" * 20).json()
    assert own["secret"] == "s" * 20
    listed = svc.v2("webhooks/listWebhooks", {"application": svc.app.code}).json()["items"]
    assert [h["url"] for h in listed] == [
        "https://hooks.example.com/a",
        "https://hooks.example.com/b",
    ]
    assert all("secret" not in h for h in listed)
    assert all(h["delivered"] == 0 and h["failing"] is False for h in listed)
    gone = svc.v2(
        "webhooks/removeWebhook",
        {"application": svc.app.code, "url": "https://hooks.example.com/b"},
    )
    assert gone.json() == {"removed": True}
    missing = svc.v2(
        "webhooks/removeWebhook",
        {"application": svc.app.code, "url": "https://hooks.example.com/b"},
    )
    assert missing.status_code == 400
    assert "is not a webhook" in missing.text


def test_a_test_event_is_signed_and_a_refusal_is_reported(database_url: str) -> None:
    with service(database_url, outbound_allow="127.0.0.1") as svc, Receiver() as receiver:
        made = _add(svc, url=receiver.url).json()
        receiver.secret = made["secret"]
        name = {"application": svc.app.code, "url": receiver.url}
        down = svc.v2("webhooks/testWebhook", name).json()
        assert down["ok"] is False
        assert "no answer" in down["error"]
        receiver.start()
        assert svc.v2("webhooks/testWebhook", name).json() == {"ok": True, "error": None}
        ((event,),) = receiver.batches
        assert event["status"] == "test"
        assert receiver.bad_signatures == 0
        receiver.answers = ["500"]
        assert svc.v2("webhooks/testWebhook", name).json() == {
            "ok": False,
            "error": "answered 500",
        }


def test_the_secret_is_stored_sealed_and_signs_only_with_the_services_key(
    database_url: str,
) -> None:
    secret = "a-secret-of-my-own-0123"
    with (
        service(database_url, outbound_allow="127.0.0.1") as svc,
        Receiver(secret=secret) as receiver,
    ):
        made = _add(svc, url=receiver.url, secret=secret, statuses=["created"])
        assert made.status_code == 200, made.text
        assert made.json()["secret"] == secret
        ((stored, sealed),) = svc.db.rows("SELECT secret, secret_sealed FROM webhooks")
        assert sealed == 1
        assert secret not in stored
        assert "secret" not in svc.v2("webhooks/listWebhooks", {}).json()["items"][0]
        receiver.start()
        for hwid in ("a", "b"):
            svc.register(hwid)
        first = svc.send(devices=["a"])
        _work_until(svc, lambda: len(receiver.unique()) >= 1)
        assert [e["tracking_code"] for e in receiver.unique().values()] == first["TrackingCodes"]
        assert receiver.bad_signatures == 0
        # a worker whose key does not open it sends nothing, and the endpoint says why
        svc.send(devices=["b"])

        def refused() -> bool:
            (hook,) = svc.v2("webhooks/listWebhooks", {}).json()["items"]
            return hook["last_error"] is not None

        _work_until(svc, refused, seconds=30, secret_key=new_key())
        (hook,) = svc.v2("webhooks/listWebhooks", {}).json()["items"]
        assert "sealed with a key this service does not have" in hook["last_error"]
        assert receiver.requests == 1
        # the service's own key: it goes on from where it was
        _work_until(svc, lambda: len(receiver.unique()) >= 2)
        assert len(receiver.unique()) == 2
        assert receiver.bad_signatures == 0


def test_without_a_secret_key_setting(database_url: str) -> None:
    # SQLite: the key file beside the database is made (0600) and seals the secret;
    # PostgreSQL has no such place, so no endpoint is made and the answer says why
    with service(database_url, secret_key="") as svc:
        resp = _add(svc, url="https://hooks.example.com/a")
        if database_url.startswith("sqlite:"):
            assert resp.status_code == 200, resp.text
            key = Path(database_url.removeprefix("sqlite:///") + ".key")
            assert key.stat().st_mode & 0o777 == 0o600
            assert svc.db.rows("SELECT secret_sealed FROM webhooks") == [(1,)]
        else:
            assert resp.status_code == 503, resp.text
            assert "webhook secrets are stored encrypted" in resp.text
            assert "PUSHTRACK_SECRET_KEY" in resp.text
            assert svc.db.count("webhooks") == 0


def test_the_signature_check_rejects_a_wrong_secret_a_changed_body_and_a_stale_time() -> None:
    body = b'{"events":[]}'
    header = sign("secret-one", body, 1_800_000_000)
    assert verify("secret-one", header, body, now=1_800_000_010)
    assert not verify("secret-two", header, body, now=1_800_000_010)
    assert not verify("secret-one", header, body + b" ", now=1_800_000_010)
    assert not verify("secret-one", header, body, now=1_800_000_000 + 3600)


def _doc_snippet(language: str) -> str:
    """The signature check docs/api.md §8.3 shows receivers, in ``language``."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    section = text.split("### 8.3 Delivery", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    return block


#: A body as endpoints get it, with characters beyond ASCII (the MAC is of the bytes).
_BODY = '{"events":[{"id":"1-2","hwid":"h\u00e9","description":"Gr\u00fc\u00dfe \u2713"}]}'.encode()


def _cases() -> list[tuple[str, str, bytes, bool]]:
    """(secret, header, body, whether a receiver must accept it)."""
    now = int(time.time())
    good = sign("whsec_right", _BODY, now)
    return [
        ("whsec_right", good, _BODY, True),
        ("whsec_wrong", good, _BODY, False),
        ("whsec_right", good, _BODY + b" ", False),
        ("whsec_right", sign("whsec_right", _BODY, now - 3600), _BODY, False),  # stale
        ("whsec_right", "v1=" + good.split("v1=")[1], _BODY, False),  # no t
        ("whsec_right", good.split(",")[0], _BODY, False),  # no v1
    ]


def test_the_documented_python_check_accepts_exactly_our_signatures() -> None:
    scope: dict[str, Any] = {}
    exec(_doc_snippet("python"), scope)  # noqa: S102 - the documentation's own code
    for secret, header, body, accepted in _cases():
        assert scope["verify"](secret, header, body) is accepted, (secret, header)


def test_the_documented_node_check_accepts_exactly_our_signatures(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = tmp_path / "verify.js"
    script.write_text(
        _doc_snippet("js")
        + "\nconst [secret, header, body] = process.argv.slice(2);"
        + '\nconsole.log(JSON.stringify(verify(secret, header, Buffer.from(body, "base64"))));\n'
    )
    for secret, header, body, accepted in _cases():
        out = subprocess.run(
            [node, str(script), secret, header, base64.b64encode(body).decode()],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(out.stdout) is accepted, (secret, header, out.stderr)


def test_an_endpoint_failing_too_long_is_marked_failing(database_url: str) -> None:
    with (
        service(database_url, outbound_allow="127.0.0.1", webhook_failing_seconds=0.2) as svc,
        Receiver() as never,  # never started: its port refuses connections
    ):
        assert _add(svc, url=never.url).status_code == 200
        svc.register("a")
        svc.send(devices=["a"])

        def failing() -> bool:
            items = svc.v2("webhooks/listWebhooks", {}).json()["items"]
            return bool(items[0]["failing"])

        _work_until(svc, failing, seconds=30)
        (hook,) = svc.v2("webhooks/listWebhooks", {}).json()["items"]
        assert hook["failing"] is True
        assert hook["failing_since"] is not None
        assert "no answer" in hook["last_error"]
        assert hook["delivered"] == 0
        metrics = svc.http.get("/metrics").text
        assert "pushtrack_webhooks_failing 1.0" in metrics


def _read_events(lines: Any, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if line.startswith("id: "):
            current["sse_id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "data" in current:
            events.append(current)
            current = {}
            if len(events) == n:
                return events
    return events


def test_the_stream_sends_new_events_and_resumes_after_the_last_one(svc: Service) -> None:
    for hwid in ("a", "b", "c"):
        svc.register(hwid)
    headers = {"Authorization": f"Token {svc.server_token}"}
    url = f"/api/v2/events/stream?application={svc.app.code}"
    with svc.http.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        sent = svc.send(devices=["a", "b", "c"])
        first = _read_events(resp.iter_lines(), 1)
    assert first[0]["event"] == "created"
    assert first[0]["data"]["id"] == first[0]["sse_id"]
    # resumed after the first: the rest, none twice
    with svc.http.stream(
        "GET", url, headers={**headers, "Last-Event-ID": first[0]["sse_id"]}
    ) as resp:
        rest = _read_events(resp.iter_lines(), 2)
    codes = [e["data"]["tracking_code"] for e in first + rest]
    assert sorted(codes) == sorted(sent["TrackingCodes"])
    assert {e["data"]["message_code"] for e in first + rest} == {sent["Messages"][0]}
    # narrowed to one device (its events come after a's, which it must not be sent)
    with svc.http.stream("GET", f"{url}&hwid=b&status=created", headers=headers) as resp:
        again = svc.send(devices=["a", "b", "c"])
        (only,) = _read_events(resp.iter_lines(), 1)
    assert (only["data"]["hwid"], only["event"]) == ("b", "created")
    assert only["data"]["tracking_code"] == again["TrackingCodes"][1]


def test_the_stream_refuses_bad_requests(shared: Service) -> None:
    svc = shared.fresh_account()
    base = "/api/v2/events/stream"
    assert svc.http.get(base).status_code == 401
    headers = {"Authorization": f"Token {svc.server_token}"}
    bad = svc.http.get(f"{base}?status=bounced", headers=headers)
    assert bad.status_code == 400
    assert "status" in bad.text
    odd = svc.http.get(f"{base}?colour=red", headers=headers)
    assert odd.status_code == 400
    assert "colour" in odd.text
    for name in ("application", "hwid", "message"):
        nul = svc.http.get(f"{base}?{name}=%00%C2%8AY", headers=headers)
        assert nul.status_code == 400
        assert f"{name}: must not contain NUL" in nul.text
    resume = svc.http.get(base, headers={**headers, "Last-Event-ID": "nonsense"})
    assert resume.status_code == 400
    assert "Last-Event-ID" in resume.text
    other = svc.new_app("other")
    restricted = svc.make_token("server", apps=[svc.app.code])
    refused = svc.http.get(
        f"{base}?application={other.code}", headers={"Authorization": f"Token {restricted}"}
    )
    assert refused.status_code == 403
    stranger = shared.fresh_account()
    foreign = svc.http.get(f"{base}?application={stranger.app.code}", headers=headers)
    assert foreign.status_code == 400
    assert f"application: {stranger.app.code} not found" in foreign.text
    device = svc.http.get(base, headers={"Authorization": f"Token {svc.device_token}"})
    assert device.status_code == 403
