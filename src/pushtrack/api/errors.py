"""The error table: one exception class per envelope outcome.

``PushtrackError`` subclasses carry the JSON 1.3 ``status_code`` (and the HTTP
status it travels with) and a message for the caller. Only this package turns
them into HTTP; anything else that escapes a handler is a 500 with no detail.
"""

from __future__ import annotations


class PushtrackError(Exception):
    http_status = 500
    status_code = 500
    default_message = "Internal error"

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        #: Seconds after which the caller may try again (sent as ``Retry-After``).
        self.retry_after = retry_after
        super().__init__(self.message)


class ArgumentError(PushtrackError):
    """A missing or invalid field, or an unknown application or message."""

    http_status = 200
    status_code = 210
    default_message = "Invalid argument"


class MalformedError(PushtrackError):
    http_status = 400
    status_code = 400
    default_message = "Malformed request string"


class IncompleteError(MalformedError):
    """The client went away (or was cut off by a read deadline) before its whole body came."""

    default_message = "Request body incomplete"


class AuthError(PushtrackError):
    http_status = 401
    status_code = 401
    default_message = "Access denied or application not found"


class ForbiddenError(PushtrackError):
    http_status = 403
    status_code = 403
    default_message = "Token restrictions forbid this operation"


class MethodNotFoundError(PushtrackError):
    http_status = 404
    status_code = 404
    default_message = "Method not found"


class MethodNotAllowedError(PushtrackError):
    """An API route asked with another HTTP method than POST."""

    http_status = 405
    status_code = 405
    default_message = "Method not allowed"


class TooLargeError(PushtrackError):
    http_status = 413
    status_code = 413
    default_message = "Request too large"


class RateLimitedError(PushtrackError):
    http_status = 429
    status_code = 429
    default_message = "Rate limit exceeded"


class UnavailableError(PushtrackError):
    """The store cannot be used right now; the caller tries again after ``Retry-After``."""

    http_status = 503
    status_code = 503
    default_message = "Service temporarily unavailable"
