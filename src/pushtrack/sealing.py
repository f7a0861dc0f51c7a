"""Secrets encrypted at rest (Fernet: AES-128-CBC and HMAC-SHA256).

The APNs ``.p8`` key, the FCM service account and the VAPID private key are
stored sealed: ``{"sealed": "<Fernet token>"}`` in place of the value; a webhook
endpoint's signing secret is stored as its Fernet token (``webhooks.secret_sealed``).
The key that seals them is not in the database: setting ``secret_key`` (for example
``PUSHTRACK_SECRET_KEY``), else the file ``secret_key_file``, else, for a
SQLite database, the file ``<database>.key`` beside it, made (0600) the first
time a secret is stored. A key file may hold several keys, one per line: the
first seals, all of them open (so keys can be rotated, then
``pushtrack secrets seal`` re-seals everything with the first).

Settings and webhook secrets stored in plain text by an older pushtrack (or written
straight into the store) are still read; ``pushtrack doctor`` reports them and
``pushtrack secrets seal`` seals them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pushtrack.config import Settings

#: The settings of each gateway kind that hold private keys.
SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    "apns": ("key",),
    "fcm": ("service_account",),
    "webpush": ("vapid_private_key",),
}


class SealingError(ValueError):
    """No key to seal or open with, or a sealed value no key opens."""


def new_key() -> str:
    return Fernet.generate_key().decode()


def key_file(settings: Settings) -> Path | None:
    """Where the keys are read from (None: only ``secret_key``, or nowhere)."""
    if settings.secret_key_file:
        return Path(settings.secret_key_file)
    if settings.database.startswith("sqlite:"):
        from pushtrack.store.sqlite import sqlite_path

        return Path(sqlite_path(settings.database) + ".key")
    return None


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless another process does first.

    The key is written to a private file beside it and linked into place, so
    ``path`` never exists empty or half written; a process that finds it made
    meanwhile keeps the other's key (two starting at once must agree on one).
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise SealingError(f"cannot create the secret key file {path}: {exc}") from None
    try:
        with open(fd, "w") as f:
            f.write(new_key() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # made meanwhile: its key is the one
    except OSError as exc:
        raise SealingError(f"cannot create the secret key file {path}: {exc}") from None
    finally:
        os.unlink(tmp)


class Sealer:
    def __init__(self, keys: Sequence[str]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except ValueError as exc:
            raise SealingError(f"a secret key is not a Fernet key: {exc}") from None

    @classmethod
    def load(cls, settings: Settings, *, create: bool = False) -> Sealer | None:
        """The keys of ``settings``; with ``create``, a new key file for a SQLite
        database that has none. None when there is no key."""
        if settings.secret_key:
            return cls([k for k in settings.secret_key.split(",") if k.strip()])
        path = key_file(settings)
        if path is None:
            return None
        if not path.exists():
            if not create:
                return None
            _create_key_file(path)
        try:
            lines = [k for k in path.read_text().splitlines() if k.strip()]
        except OSError as exc:
            raise SealingError(f"cannot read the secret key file {path}: {exc}") from None
        if not lines:
            raise SealingError(f"the secret key file {path} holds no key")
        return cls(lines)

    def seal(self, kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with its private keys sealed (already sealed ones re-sealed with
        the first key)."""
        out = dict(config)
        for name in SEALED_FIELDS.get(kind, ()):
            value = out.get(name)
            if value is None:
                continue
            if is_sealed(value):
                value = self.open_value(value["sealed"], name)
            text = value if isinstance(value, str) else json.dumps(value)
            out[name] = {"sealed": self.seal_text(text)}
        return out

    def seal_text(self, text: str) -> str:
        """``text`` sealed with the first key: a Fernet token."""
        return self._fernet.encrypt(text.encode()).decode()

    def open_value(self, token: str, name: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SealingError(f"{name}: sealed with a key this service does not have") from None

    def open(self, kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
        return unseal(kind, config, self)


def open_text(token: str, name: str, sealer: Sealer | None) -> str:
    """The text ``Sealer.seal_text`` sealed as ``token``; ``SealingError`` without a key
    that opens it."""
    if sealer is None:
        raise SealingError(
            f"{name} is sealed and no secret key is configured (secret_key or secret_key_file)"
        )
    return sealer.open_value(token, name)


def is_sealed(value: Any) -> bool:
    return (
        isinstance(value, Mapping) and set(value) == {"sealed"} and isinstance(value["sealed"], str)
    )


def plain_fields(kind: str, config: Mapping[str, Any]) -> list[str]:
    """The private-key settings of ``config`` stored in plain text."""
    return [
        n
        for n in SEALED_FIELDS.get(kind, ())
        if config.get(n) is not None and not is_sealed(config[n])
    ]


def unseal(kind: str, config: Mapping[str, Any], sealer: Sealer | None) -> dict[str, Any]:
    """``config`` with its sealed values opened (plain ones pass as they are)."""
    out = dict(config)
    for name in SEALED_FIELDS.get(kind, ()):
        value = out.get(name)
        if value is not None and is_sealed(value):
            if sealer is None:
                raise SealingError(
                    f"{name} is sealed and no secret key is configured"
                    " (secret_key or secret_key_file)"
                )
            out[name] = sealer.open_value(value["sealed"], name)
    return out
