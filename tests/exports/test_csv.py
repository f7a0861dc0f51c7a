"""The tracking-log CSV, byte for byte (docs/api.md §5), and read back with the csv module."""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pushtrack.domain.payload import encode, render
from pushtrack.domain.status import Status
from pushtrack.jobs.tracklog import ExportCancelled, csv_line, write_zip
from pushtrack.store.exports import Rendered, TrackRow
from tests.exports._support import Clock, at, clocked_service, create, only_member, tracking_log

SEED_PAYLOAD = (
    '{"aps":{"alert":"text","badge":0,"sound":""},"md":{"uid":11793546856,'
    '"user_id":"09913CFD-74AD-4A8C-B06E-CCA51200ADDC"},"p":"Zh","pw_msg":"1"}'
)
SEED_LINE = (
    '"2021-04-20 13:01:01";T-D6C2-ABC2228F-C9C305A9;09913CFD-74AD-4A8C-B06E-CCA51200ADDC;'
    "09913CFD-74AD-4A8C-B06E-CCA51200ADDC;delivered;Success;C90C0-0E786;"
    '"{""aps"":{""alert"":""text"",""badge"":0,""sound"":""""},""md"":{""uid"":11793546856,'
    '""user_id"":""09913CFD-74AD-4A8C-B06E-CCA51200ADDC""},""p"":""Zh"",""pw_msg"":""1""}"\n'
)


def row(**fields: object) -> TrackRow:
    base: dict[str, object] = {
        "event_id": 1,
        "ts": at("2021-04-20 13:01:01.999999"),
        "tracking_code": "T-D6C2-ABC2228F-C9C305A9",
        "target_id": "09913CFD-74AD-4A8C-B06E-CCA51200ADDC",
        "hwid": "09913CFD-74AD-4A8C-B06E-CCA51200ADDC",
        "status": Status.DELIVERED,
        "description": "Success",
        "app_code": "C90C0-0E786",
        "payload": SEED_PAYLOAD,
    }
    base.update(fields)
    return TrackRow(**base)  # type: ignore[arg-type]


def test_the_seed_example_row() -> None:
    assert csv_line(row()) == SEED_LINE


def test_fields_are_quoted_only_when_needed() -> None:
    line = csv_line(
        row(
            target_id="tok;en",
            hwid='say "hi"',
            description="line\nbreak",
            status=Status.FAILED,
            payload="",
        )
    )
    assert line == (
        '"2021-04-20 13:01:01";T-D6C2-ABC2228F-C9C305A9;"tok;en";"say ""hi""";failed;'
        '"line\nbreak";C90C0-0E786;""\n'
    )
    line = csv_line(row(description="carriage\rreturn", hwid="Grüße 🎉", target_id=" spaced "))
    assert line.startswith(
        '"2021-04-20 13:01:01";T-D6C2-ABC2228F-C9C305A9; spaced ;Grüße 🎉;delivered;'
        '"carriage\rreturn";'
    )


def test_the_zip_holds_one_deflated_csv(tmp_path: Path) -> None:
    rows = [row(event_id=i, ts=at("2021-04-20 13:01:01") + i * 1_000_000) for i in range(3)]
    result = write_zip([rows[:2], rows[2:]], tmp_path / "out.zip", "log.csv")
    assert result.rows == 3
    assert result.first_ts == rows[0].ts
    data = only_member((tmp_path / "out.zip").read_bytes())
    assert data.decode().count("\n") == 3
    assert data.startswith(b'"2021-04-20 13:01:01";')
    assert b'"2021-04-20 13:01:03";' in data
    assert not list(tmp_path.glob("*.tmp"))


def test_export_byte_for_byte_and_read_back(database_url: str, tmp_path: Path) -> None:
    clock = Clock("2024-05-01 12:00:00")
    with clocked_service(database_url, tmp_path, clock) as (svc, settings):
        ios, android = 'dev;1"x', "dev 2"
        svc.register(ios, 1, userId="user-ü")
        svc.register(android, 3, push_token="tok\t2", language="de")
        content = {"en": 'He said "hi"; ok\nbye', "de": "Grüße 🎉 «ß»"}
        out = create(svc, content=content, devices=[ios, "tok\t2", "ghost;device"])
        t_ios, t_android, t_ghost = out["TrackingCodes"]
        app = svc.app.code
        # the message id payloads carry is the one the tenant is shown (getMessageLog)
        mid = svc.log(message_code=out["Messages"][0])[0]["message_id"]
        ((stored,),) = svc.db.rows("SELECT id FROM messages")
        assert mid != stored
        hashes = svc.hashes()
        clock.advance(1.5)
        out = svc.device("messageDeliveryEvent", hwid=ios, hash=hashes[t_ios])
        assert out["status_code"] == 200
        clock.advance(1.5)
        assert svc.device("pushStat", hwid=android, hash=hashes[t_android])["status_code"] == 200
        assert svc.device("pushStat", hwid=android, hash=hashes[t_android])["status_code"] == 200

        data = tracking_log(svc, settings, date="2024-05-01")

    p_ios = (
        '"{""aps"":{""alert"":""He said \\""hi\\""; ok\\nbye"",""sound"":""default""},'
        f'""md"":{{""mid"":{mid},""user_id"":""user-ü""}},""p"":""{hashes[t_ios]}"",'
        '""pw_msg"":""1""}"'
    )
    p_android = (
        f'"{{""md"":{{""mid"":{mid},""user_id"":""dev 2""}},""p"":""{hashes[t_android]}"",'
        '""pw_msg"":""1"",""title"":""Grüße 🎉 «ß»""}"'
    )
    ios_q = '"dev;1""x"'
    expected = (
        f'"2024-05-01 12:00:00";{t_ios};{ios_q};{ios_q};created;Created;{app};{p_ios}\n'
        f'"2024-05-01 12:00:00";{t_android};tok\t2;dev 2;created;Created;{app};{p_android}\n'
        f'"2024-05-01 12:00:00";{t_ghost};"ghost;device";"ghost;device";created;Created;{app};""\n'
        f'"2024-05-01 12:00:00";{t_ghost};"ghost;device";"ghost;device";failed;Unknown device;'
        f'{app};""\n'
        f'"2024-05-01 12:00:01";{t_ios};{ios_q};{ios_q};delivered;Confirmed by device;{app};'
        f"{p_ios}\n"
        f'"2024-05-01 12:00:03";{t_android};tok\t2;dev 2;opened;Opened;{app};{p_android}\n'
    )
    assert data.decode("utf-8") == expected
    assert data == expected.encode("utf-8")

    parsed = list(csv.reader(io.StringIO(data.decode(), newline=""), delimiter=";"))
    assert [r[:7] for r in parsed] == [
        ["2024-05-01 12:00:00", t_ios, ios, ios, "created", "Created", app],
        ["2024-05-01 12:00:00", t_android, "tok\t2", android, "created", "Created", app],
        ["2024-05-01 12:00:00", t_ghost, "ghost;device", "ghost;device", "created", "Created", app],
        [
            "2024-05-01 12:00:00",
            t_ghost,
            "ghost;device",
            "ghost;device",
            "failed",
            "Unknown device",
            app,
        ],
        ["2024-05-01 12:00:01", t_ios, ios, ios, "delivered", "Confirmed by device", app],
        ["2024-05-01 12:00:03", t_android, "tok\t2", android, "opened", "Opened", app],
    ]
    payload = json.loads(parsed[0][7])
    assert payload == {
        "aps": {"alert": content["en"], "sound": "default"},
        "md": {"mid": mid, "user_id": "user-ü"},
        "p": hashes[t_ios],
        "pw_msg": "1",
    }
    assert json.loads(parsed[5][7])["title"] == content["de"]  # Android's text key
    assert parsed[2][7] == ""


@pytest.mark.parametrize(
    "template",
    [
        {"pw_msg": "1", "aps": {"alert": "text", "sound": ""}},
        {"pw_msg": "1", "title": "", "body": 'a "b" \\ c', "u": {"md": 1, "p": [1, "x"]}},
        {"pw_msg": "1", "aps": {"alert": {"body": "Grüße 🎉", "title": "t\nu"}}, "zz": None},
        {},
    ],
)
@pytest.mark.parametrize("user", ["hw-1", 'quote"d', "back\\slash", "ctl\x01\x1f", "é🎉", ""])
def test_spliced_payloads_are_the_rendered_bytes(template: dict[str, Any], user: str) -> None:
    rendered = Rendered(template)
    assert rendered.parts is not None
    for p, mid in (("Zh-_09azAZ", 1), ('we"ird\\', 2**40)):
        assert rendered.payload(p, mid, user) == encode(render(template, p, mid, user)).decode()


def test_a_template_holding_the_placeholder_falls_back_to_rendering() -> None:
    template = {"pw_msg": "1", "body": Rendered._USER}
    rendered = Rendered(template)
    assert rendered.parts is None
    assert rendered.payload("p", 3, "u") == encode(render(template, "p", 3, "u")).decode()


def test_a_failed_or_stopped_export_leaves_no_file(tmp_path: Path) -> None:
    rows = [row(event_id=i) for i in range(3)]

    def broken() -> Iterator[list[TrackRow]]:
        yield rows
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_zip(broken(), tmp_path / "a.zip", "a.csv")
    stop = threading.Event()

    def stopped() -> Iterator[list[TrackRow]]:
        yield rows
        stop.set()
        yield rows

    with pytest.raises(ExportCancelled):
        write_zip(stopped(), tmp_path / "b.zip", "b.csv", stop=stop)
    assert list(tmp_path.iterdir()) == []
    # An endless source is no problem for memory: pages are written as they come.
    many = itertools.islice(itertools.repeat(rows), 2000)
    assert write_zip(many, tmp_path / "c.zip", "c.csv").rows == 6000
