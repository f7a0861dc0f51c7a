"""Log output: plain text lines, or one JSON object per line (``log_format = "json"``).

The access log (setting ``access_log``) writes one record per API request on the
``pushtrack.access`` logger, its fields as attributes of the record: ``api``,
``method``, ``status``, ``ms``, ``account``, ``request_id``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import msgspec

#: The access log's fields, in the order a text line shows them.
ACCESS_FIELDS = ("api", "method", "status", "ms", "account", "request_id")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
_encoder = msgspec.json.Encoder()
_PLAIN = (str, int, float, bool, type(None))

access = logging.getLogger("pushtrack.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
                )
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(out).decode()


def configure(log_format: str = "text") -> None:
    """Send the process' logs to stderr in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def access_line(**fields: Any) -> None:
    """One access-log record (``fields``: ``ACCESS_FIELDS``)."""
    text = " ".join(str(fields.get(k, "-")) for k in ACCESS_FIELDS)
    access.info(text, extra=fields)
