"""``pushtrack webhook`` and ``pushtrack tail``, run as the real console script."""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from tests.cli.test_commands import PUSHTRACK, Cli
from tests.cli.test_commands import cli as cli  # the fixture
from tests.gateways.webhook_receiver import Receiver
from tests.support import free_port, service


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
