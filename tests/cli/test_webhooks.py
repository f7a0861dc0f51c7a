"""``pushtrack webhook`` and ``pushtrack tail``, run as the real console script."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.cli.test_commands import PUSHTRACK, Cli
from tests.cli.test_commands import cli as cli  # the fixture
from tests.delivery.test_webhooks import _work_until
from tests.gateways.webhook_receiver import Receiver
from tests.support import Database, free_port, service


@pytest.mark.slow
def test_webhook_add_list_test_replay_remove(cli: Cli) -> None:
    code = cli.json("app", "create", "Shop")["code"]
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    refused = cli("webhook", "add", code, url, rc=2)
    assert "https" in refused.stderr
    allow = {"PUSHTRACK_OUTBOUND_ALLOW": "127.0.0.1"}
    made = cli.json("webhook", "add", code, url, "--status", "created", **allow)
    assert made["url"] == url
    assert made["statuses"] == ["created"]
    assert made["secret"].startswith("whsec_")
    own = cli.json("webhook", "add", code, url + "/own", "--secret", "mine-" + "x" * 16, **allow)
    assert own["secret"] == "mine-" + "x" * 16
    short = cli("webhook", "add", code, url + "/short", "--secret", "short", rc=2, **allow)
    assert "--secret must be 16 to 200 characters" in short.stderr
    # stored sealed with the key made beside the database, never as printed
    stored = dict(Database(cli.database).rows("SELECT url, secret FROM webhooks"))
    assert made["secret"] not in stored[url]
    assert own["secret"] not in stored[url + "/own"]
    assert (cli.cwd / "cli.db.key").exists()
    cli("webhook", "remove", code, url + "/own")
    unknown = cli("webhook", "add", code, url + "2", "--status", "bounced", rc=2, **allow)
    assert "unknown status 'bounced'" in unknown.stderr
    (listed,) = cli.json("webhook", "list")
    assert listed["url"] == url
    assert "secret" not in listed
    assert f"{code}  {url}  ok  delivered=0  statuses=created" in cli("webhook", "list").stdout

    with Receiver(port, made["secret"]) as receiver:
        down = cli("webhook", "test", code, url, rc=1, **allow)
        assert "no answer" in down.stdout
        receiver.start()
        assert cli("webhook", "test", code, url, **allow).stdout.strip() == "ok"
        assert receiver.batches[0][0]["status"] == "test"
        assert receiver.bad_signatures == 0

    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    replayed = cli("webhook", "replay", code, url, "--since", today)
    assert "sent everything again" in replayed.stdout
    old = cli("webhook", "replay", code, url, "--since", "2001-01-01", rc=2)
    assert "retention" in old.stderr
    assert "removed" in cli("webhook", "remove", code, url).stdout
    cli("webhook", "remove", code, url, rc=2)
    assert cli.json("webhook", "list") == []


def test_tail_prints_events_as_they_happen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tail.db"
    with service(url) as svc:
        svc.register("a")
        svc.register("b")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
        env |= {"PUSHTRACK_DATABASE": url, "PUSHTRACK_WEBHOOK_POLL_MS": "50"}
        tail = subprocess.Popen(
            [PUSHTRACK, "tail", "--json", "--app", svc.app.code, "--hwid", "b"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert tail.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in tail.stdout], daemon=True).start()
        try:
            # tail starts at the head: what comes after it starts is printed
            seen: list[dict[str, object]] = []
            for _ in range(100):
                svc.send(devices=["a", "b"])
                try:
                    seen.append(json.loads(lines.get(timeout=0.5)))
                    break
                except queue.Empty:
                    continue
        finally:
            tail.send_signal(signal.SIGINT)
            tail.wait(timeout=10)
            tail.stdout.close()
        assert seen
        assert seen[0]["hwid"] == "b"
        assert seen[0]["status"] == "created"
        assert seen[0]["application_code"] == svc.app.code


def test_webhook_list_shows_an_endpoint_failing_too_long(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/failing.db"
    with service(db, outbound_allow="127.0.0.1") as svc, Receiver() as down:  # never started
        url = down.url
        made = svc.v2("webhooks/addWebhook", {"application": svc.app.code, "url": url})
        assert made.status_code == 200, made.text
        svc.register("a")
        svc.send(devices=["a"])
        failing = "SELECT failing FROM webhooks WHERE failing = 1"
        _work_until(svc, lambda: bool(svc.db.rows(failing)), 30, webhook_failing_seconds=0.2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
    listed = subprocess.run(
        [PUSHTRACK, "webhook", "list", "--database", db],
        env={**env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    line = next(x for x in listed.splitlines() if url in x)
    assert "  FAILING  delivered=0" in line
    assert "error=no answer" in line


def test_tail_narrows_by_message_and_status_and_colours_by_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tail.db"
    with service(url) as svc:
        hwids = [f"m{i:02}" for i in range(30)]
        for hwid in [*hwids, "x"]:
            svc.register(hwid)
        message = svc.send(devices=hwids)
        wanted, codes = message["Messages"][0], message["TrackingCodes"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
        env |= {
            "PUSHTRACK_DATABASE": url,
            "PUSHTRACK_WEBHOOK_POLL_MS": "50",
            "FORCE_COLOR": "1",  # colours as in a terminal
            "TERM": "xterm",
            "COLUMNS": "300",
        }
        env.pop("NO_COLOR", None)
        argv = [PUSHTRACK, "tail", "--app", svc.app.code, "--message", wanted]
        tail = subprocess.Popen(
            [*argv, "--status", "opened"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert tail.stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in tail.stdout], daemon=True).start()
        seen: list[str] = []
        try:
            for hwid, code in zip(hwids, codes, strict=True):
                # another message's created and opened: left out by --message and --status
                (other,) = svc.send(devices=["x"])["TrackingCodes"]
                svc.device("pushStat", hwid="x", hash=svc.hash_of(other))
                out = svc.device("pushStat", hwid=hwid, hash=svc.hash_of(code))
                assert out["status_code"] == 200, out
                try:
                    seen.append(lines.get(timeout=0.5))
                    break
                except queue.Empty:
                    continue
            seen.extend(_drain(lines, 1.0))
        finally:
            tail.send_signal(signal.SIGINT)
            tail.wait(timeout=10)
            tail.stdout.close()
        assert seen
        for line in seen:
            assert line.startswith("\x1b[35m"), repr(line)  # opened: magenta
            fields = line.split()
            assert fields[2] == "opened", repr(line)
            assert fields[4] == wanted, repr(line)
            assert fields[5] in hwids, repr(line)


def _drain(lines: queue.Queue[str], seconds: float) -> list[str]:
    """What else arrives within ``seconds``."""
    out: list[str] = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(lines.get(timeout=seconds))
    return out
