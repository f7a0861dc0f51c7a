"""Helpers for the gateway tests."""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushtrack.delivery.base import Notification
from pushtrack.domain import payload as payloads
from pushtrack.domain.platforms import Platform

APNS_KEY_ID = "ABC123DEFG"
APNS_TEAM_ID = "DEF123GHIJ"
APNS_TOPIC = "com.example.pushtrack"


def pem_of(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def apns_token() -> str:
    return secrets.token_hex(32)


def notification(
    platform: Platform,
    token: str,
    delivery_id: int = 1,
    *,
    options: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
) -> Notification:
    """A notification as the dispatcher builds it: a rendered template of a real message."""
    message = message or {"content": "Hello", "title": "Greeting", "data": {"k": [1, 2]}}
    template = payloads.build_template(message, platform, None)
    payload = payloads.render(template.body, f"p{delivery_id:08x}", 42, f"user-{delivery_id}")
    return Notification(
        delivery_id=delivery_id,
        tracking_code=f"T-TEST-{delivery_id:08X}-00000000",
        platform=platform,
        push_token=token,
        payload=payload,
        options={**template.options, **(options or {})},
    )
