"""JSON text columns: how the store writes and reads the JSON it keeps as text
(notifications, payloads, job parameters and results, webhook statuses)."""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Encoder()


def dumps(value: Any) -> str:
    return _json.encode(value).decode()


def loads(text: str | bytes | None) -> Any:
    return None if text is None else msgspec.json.decode(text)
