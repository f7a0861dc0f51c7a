"""Dashboard sessions: the signed-in token in an encrypted, HttpOnly cookie, and CSRF.

A session is a Fernet token (AES-128-CBC + HMAC-SHA256) holding the server API token
the person signed in with and the session's CSRF value, under a key derived from the
database's server secret, so every process serving the same database reads the same
sessions and a restart signs no one out. The cookie is HttpOnly, SameSite=Strict,
Secure when the request came over TLS, and lives ``SESSION_SECONDS`` at most; the
token in it is checked against the store on every request (a revoked token ends
the session at once, within the API's token cache time).

Forms carry the CSRF value in a hidden ``csrf`` field: the session's, or before
sign-in the value of the short-lived ``pt_signin`` cookie.
"""

from __future__ import annotations

import base64
import hmac
import secrets

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "pt_session"
SIGNIN_COOKIE = "pt_signin"
#: A session ends this long after sign-in.
SESSION_SECONDS = 12 * 3600
SIGNIN_SECONDS = 3600


class Session(msgspec.Struct, frozen=True):
    #: the server API token signed in with
    token: str
    #: the value every form of this session must carry
    csrf: str


def derive_key(server_secret: bytes) -> bytes:
    """The sessions' Fernet key, derived from the server secret for this one use."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"pushtrack dashboard session"
    ).derive(server_secret)
    return base64.urlsafe_b64encode(raw)


class Sessions:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(msgspec.json.encode(session)).decode()

    def open(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            raw = self._fernet.decrypt(value.encode(), ttl=SESSION_SECONDS)
            return msgspec.json.decode(raw, type=Session)
        except (InvalidToken, msgspec.DecodeError, msgspec.ValidationError, ValueError):
            return None

    def new(self, token: str) -> Session:
        return Session(token=token, csrf=secrets.token_urlsafe(24))

    @staticmethod
    def new_signin() -> str:
        """The CSRF value of a sign-in form (kept in the ``pt_signin`` cookie)."""
        return secrets.token_urlsafe(24)


def secure(request: Request) -> bool:
    """Whether the cookie may only travel over TLS (the request came over it)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=secure(request))


def same(given: str | None, expected: str | None) -> bool:
    """A constant-time comparison of a form's CSRF value with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
