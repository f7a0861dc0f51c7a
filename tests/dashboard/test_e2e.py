"""The dashboard end to end: Debian's headless Chromium (through chromedriver) against a
running ``pushtrack serve --demo`` with its sandbox data, as a person would use it.

Screenshots of every page, at a desktop's and a phone's width, are saved into a folder
the run prints (``PUSHTRACK_SCREENSHOTS`` chooses it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PUSHTRACK = str(Path(sys.executable).with_name("pushtrack"))
DESKTOP = (1280, 900)
PHONE = (390, 844)

T = TypeVar("T")


def _ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver when they are missing (as root)."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
            check=False,
            env=env,
            capture_output=True,
        )
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("the end-to-end test needs Debian's chromium and chromium-driver")


def wait_for(
    what: str,
    check: Callable[[], T | None],
    seconds: float = 20,
    explain: Callable[[], object] | None = None,
) -> T:
    """``check()`` once it is truthy; ``explain()`` says what there was instead, if not."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except (NoSuchElementException, StaleElementReferenceException):
            found = None  # the page is still being replaced
        if found:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}" + (f": {explain()}" if explain else ""))
        time.sleep(0.1)


class Pushtrack:
    """``pushtrack serve --demo`` on an empty SQLite database, and its CLI."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHTRACK_")}
        self.env["PUSHTRACK_DATABASE"] = f"sqlite:///{where}/pushtrack.db"
        self.env["PUSHTRACK_PUBLIC_URL"] = self.url
        self.log = (where / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [PUSHTRACK, "serve", "--demo", "--json", "--port", str(self.port)],
            cwd=where,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        self.demo = json.loads(self.proc.stdout.readline())
        json.loads(self.proc.stdout.readline())  # listening
        wait_for("the server", self._healthy)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def cli(self, *args: str) -> Any:
        done = subprocess.run(
            [PUSHTRACK, *args, "--json"],
            cwd=self.where,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(done.stdout)

    def api(self, method: str, token: str, body: dict[str, Any]) -> Any:
        if "/" in method or ":" in method:
            resp = httpx.post(
                f"{self.url}/api/v2/{method}",
                json=body,
                headers={"Authorization": f"Token {token}"},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            return resp.json()
        resp = httpx.post(
            f"{self.url}/json/1.3/{method}", json={"request": {"auth": token, **body}}, timeout=30
        )
        out = resp.json()
        assert out["status_code"] == 200, out
        return out["response"]

    def subscribed(self, device_token: str, app: str, hwid: str) -> bool:
        """checkDevice, as the device's SDK asks it: can pushes reach this device?"""
        resp = httpx.post(
            f"{self.url}/json/1.3/checkDevice",
            json={"request": {"application": app, "hwid": hwid}},
            headers={"Authorization": f"Token {device_token}"},
            timeout=30,
        )
        out = resp.json()
        assert out["status_code"] == 200, out
        return bool(out["response"]["push_token_exist"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushtrack]:
    server = Pushtrack(tmp_path_factory.mktemp("e2e"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("PUSHTRACK_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Person:
    """The browser, with what a test does with it."""

    def __init__(self, driver: Any, base: str, screens: Path) -> None:
        from selenium.webdriver.common.by import By

        self.d = driver
        self.base = base
        self.screens = screens
        self.by = By

    def go(self, path: str) -> None:
        self.d.get(self.base + path)

    def find(self, css: str) -> Any:
        return self.d.find_element(self.by.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return list(self.d.find_elements(self.by.CSS_SELECTOR, css))

    def text(self) -> str:
        return str(self.find("body").text)

    def path(self) -> str:
        return str(self.d.execute_script("return location.pathname"))

    def shot(self, name: str) -> None:
        """The page at a desktop's width and at a phone's, full height."""
        for label, (w, h) in (("desktop", DESKTOP), ("phone", PHONE)):
            self.d.set_window_size(w, h)
            height = self.d.execute_script("return document.documentElement.scrollHeight")
            self.d.set_window_size(w, min(max(h, int(height) + 120), 4000))
            # nothing on the page is wider than the screen (tables scroll in their box)
            wide = self.d.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth + 1"
            )
            assert not wide, f"{name} is wider than a {label} screen"
            self.d.save_screenshot(str(self.screens / f"{name}-{label}.png"))
        self.d.set_window_size(*DESKTOP)

    def errors(self) -> list[str]:
        """What the browser's console said at the error level (CSP refusals among them)."""
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.slow
def test_the_dashboard_in_a_real_browser(
    running: Pushtrack, browser: Any, screens: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\ndashboard screenshots: {screens}")
    demo = running.demo
    app_a = demo["application"]
    # a second application B with a message of its own, and a token for each
    app_b = running.cli("app", "create", "Other shop")["code"]
    token_a = running.cli("token", "create", "--kind", "server", "--app", app_a)["token"]
    token_b = running.cli("token", "create", "--kind", "server", "--app", app_b)["token"]
    b_message = running.api(
        "createMessage", token_b, {"application": app_b, "notifications": [{"content": "B"}]}
    )["Messages"][0]
    # the test pushes below go to an iOS device, on a sandbox that accepts every push
    running.cli(
        "app", "set-gateway", app_a, "--platform", "ios", "--kind", "sandbox",
        "--set", "failure_rate=0", "--set", "retry_rate=0",
    )  # fmt: skip

    def listed() -> list[dict[str, Any]]:
        body = {"filters": {"application": app_a}, "per_page": 100}
        items: list[dict[str, Any]] = running.api("messages:list", token_a, body)["items"]
        return items

    # the demo's first minute: messages sent through the sandbox, some failed, some opened
    def demo_sent() -> list[dict[str, Any]] | None:
        items = listed()
        totals = [sum(m["opens"] for m in i["push_info"]["metrics"]) for i in items]
        return items if len(items) >= 5 and sum(totals) > 0 else None

    items = wait_for("the demo's messages", demo_sent, 60)
    welcome = next(i for i in items if i["push_info"]["details"]["title"] == "Welcome back")
    delivered = running.api(
        "statistics/getMessageLog",
        token_a,
        {"message_code": welcome["code"], "platforms": ["iOS"], "actions": ["delivered"]},
    )["data"]
    # the test pushes below go to a device the demo's sandbox has not unsubscribed since
    # (it answers some pushes "Unregistered", as APNs does for an app that is gone)
    device_a = running.cli("token", "create", "--kind", "device", "--app", app_a)["token"]
    reached = next(r for r in delivered if running.subscribed(device_a, app_a, r["hwid"]))
    ios = reached["hwid"]

    me = Person(browser, running.url, screens)

    # sign in
    me.go("/")
    assert me.path() == "/signin"
    me.shot("signin")
    me.find("#token").send_keys(token_a)
    me.find(".signin button").click()
    wait_for("the messages page", lambda: me.path() == f"/apps/{app_a}/messages")
    assert "Welcome back" in me.text()
    assert "delivered" in me.text()
    me.shot("messages")

    # a message: content, funnel, the chart drawn from the counters, failures, deliveries
    me.find(f'a.code[href$="/{welcome["code"]}"]').click()
    wait_for("the chart", lambda: me.find("#chart").get_attribute("data-ready") == "drawn")

    def chart_equals_counters() -> bool:
        before = _counted(running, token_a, welcome["code"])
        me.d.refresh()
        wait_for("the chart", lambda: me.find("#chart").get_attribute("data-ready") == "drawn")
        data = me.d.execute_script("return window.ptChart.data")
        after = _counted(running, token_a, welcome["code"])
        if before != after:
            return False  # the demo's devices reported meanwhile: read again
        drawn = {int(t): [int(s[i]) for s in data[1:]] for i, t in enumerate(data[0])}
        assert {t: v for t, v in drawn.items() if any(v)} == before
        return True

    wait_for("a chart read between two equal counter readings", chart_equals_counters, 30)
    text = me.text()
    assert "Your weekly summary is ready" in text
    assert "Failures by reason and platform" in text
    assert me.all("#failures tbody tr"), "the sandbox fails some pushes, with reasons"
    # with their rates: each group's share of the failures, the funnel per platform
    shares = [c.text for c in me.all("#failures td.share")]
    assert shares
    assert all(share.endswith("%") for share in shares)
    assert len(me.all("#by-platform tbody tr")) >= 2
    me.shot("message")

    # a delivery's timeline, from the latest deliveries
    me.find("#latest tbody tr a").click()
    wait_for("the timeline", lambda: me.all("table.trail tbody tr"))
    assert "created" in me.text()
    me.shot("delivery-timeline")

    # a device's timeline by hwid
    me.go(f"/apps/{app_a}/devices")
    me.find("#q").send_keys(ios)
    me.find("form.filters button").click()
    wait_for("the device's timeline", lambda: me.all("table.trail tbody tr"))
    assert welcome["code"] in me.text()
    me.shot("device-timeline")

    # live: a push sent now shows up; paused, nothing is shown; resumed, nothing is missed
    me.go(f"/apps/{app_a}/live")
    wait_for("the live stream", lambda: me.find("#live").get_attribute("data-state") == "live")
    first = _push(running, token_a, app_a, ios, "live one")
    wait_for("a live event", lambda: first in me.find("#live").text, 30)
    me.find("#live-pause").click()
    assert me.find("#live").get_attribute("data-state") == "paused"
    second = _push(running, token_a, app_a, ios, "live two")
    wait_for(
        "the push to be sent",
        lambda: _delivered(running, token_a, second),
        30,
        explain=lambda: _trail(running, token_a, second),
    )
    assert second not in me.find("#live").text
    me.find("#live-pause").click()
    wait_for("the events while paused", lambda: second in me.find("#live").text, 30)
    me.shot("live")

    # a test push from the dashboard, its statuses arriving
    me.go(f"/apps/{app_a}/push")
    me.find("#hwid").send_keys(ios)
    me.find("#send-push").click()
    wait_for("the test push's page", lambda: "/push/" in me.path())
    wait_for("delivered", lambda: "delivered" in me.find("#push-trail").text, 30)
    me.shot("test-push")

    # an export: started, watched, downloaded
    me.go(f"/apps/{app_a}/exports")
    me.shot("exports")
    me.find("#start-export").click()
    link = wait_for("the download link", lambda: _shown(me.find("#download")), 40)
    me.shot("export")
    zipped = httpx.get(link, timeout=30)
    assert zipped.status_code == 200
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
        (name,) = z.namelist()
        rows = z.read(name).decode().splitlines()
    assert any(reached["tracking_code"] in row for row in rows)

    # so far nothing was refused by the content security policy, nothing failed to load
    assert me.errors() == []

    # a form posted without its CSRF token is refused
    me.go(f"/apps/{app_a}/exports")
    me.d.execute_script("document.querySelector('main form input[name=csrf]').remove()")
    me.find("#start-export").click()
    wait_for("the refusal", lambda: me.all("#problem"))
    assert "CSRF" in me.text()

    # B's application, its message, its export and every URL of it do not exist for
    # A's token, typed in the address bar: the same page as an application that does not
    b_export = running.api(
        "getTrackingLog",
        token_b,
        {"application": app_b, "date": time.strftime("%Y-%m-%d", time.gmtime())},
    )["request_id"]
    me.go("/apps/NO-SUCH-APP/messages")
    nothing = me.find("main").text
    me.shot("not-found")
    for path in (
        f"/apps/{app_b}/messages",
        f"/apps/{app_b}/messages?campaign=x",
        f"/apps/{app_b}/messages/{b_message}",
        f"/apps/{app_b}/messages/{b_message}/series",
        f"/apps/{app_b}/messages/{b_message}/failures",
        f"/apps/{app_a}/messages/{b_message}",
        f"/apps/{app_a}/messages/{b_message}/series",
        f"/apps/{app_b}/devices",
        f"/apps/{app_b}/devices?kind=hwid&q={ios}",
        f"/apps/{app_b}/trail?code={reached['tracking_code']}",
        f"/apps/{app_b}/live",
        f"/apps/{app_b}/live/stream",
        f"/apps/{app_b}/exports",
        f"/apps/{app_b}/exports/{b_export}",
        f"/apps/{app_b}/exports/{b_export}/status",
        f"/apps/{app_a}/exports/{b_export}",
        f"/apps/{app_b}/push",
        f"/apps/{app_b}/push/{reached['tracking_code']}",
    ):
        me.go(path)
        assert me.find("#problem").text == "Not found.", path
        assert me.find("main").text == nothing, path
    me.go("/apps")
    assert app_b not in me.text()
    assert app_a in me.text()
    me.shot("apps")

    # sign out: the pages ask to sign in again
    me.go(f"/apps/{app_a}/messages")
    me.find("#signout").click()
    wait_for("the sign-in page", lambda: me.path() == "/signin")
    me.go(f"/apps/{app_a}/messages")
    assert me.path() == "/signin"
    # the refusals above were answered as such (403, 404), and the policy refused nothing
    assert not [e for e in me.errors() if "Content Security Policy" in e]


def _counted(running: Pushtrack, token: str, code: str) -> dict[int, list[int]]:
    """totalsByIntervals per minute, summed over platforms: [sends, deliveries, opens,
    errors] by Unix second."""
    out = running.api(
        "statistics/messages/totalsByIntervals", token, {"message_code": code, "interval": "minute"}
    )
    sums: dict[int, list[int]] = {}
    for m in out["metrics"]:
        ts = int(time.mktime(time.strptime(m["timestamp"], "%Y-%m-%d %H:%M:%S")) - time.timezone)
        acc = sums.setdefault(ts, [0, 0, 0, 0])
        for i, k in enumerate(("sends", "deliveries", "opens", "errors")):
            acc[i] += int(m[k])
    return {t: v for t, v in sums.items() if any(v)}


def _push(running: Pushtrack, token: str, app: str, hwid: str, content: str) -> str:
    out = running.api(
        "createMessage",
        token,
        {"application": app, "notifications": [{"content": content, "devices": [hwid]}]},
    )
    return str(out["Messages"][0])


def _delivered(running: Pushtrack, token: str, message: str) -> bool:
    rows = running.api(
        "statistics/getMessageLog", token, {"message_code": message, "actions": ["delivered"]}
    )["data"]
    return bool(rows)


def _trail(running: Pushtrack, token: str, message: str) -> list[tuple[str, str, str]]:
    """The message's trail: (hwid, action, description) of each event."""
    rows = running.api("statistics/getMessageLog", token, {"message_code": message})["data"]
    return [(r["hwid"], r["action"], r["description"]) for r in rows]


def _shown(link: Any) -> str | None:
    href = link.get_attribute("href")
    return None if link.get_attribute("hidden") is not None or href.endswith("#") else href
