"""The ``Store`` protocol and the plain types that cross it.

Rows never leave the store: engines return these types. Every method is a
coroutine; engines run blocking database work off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from pushtrack.domain.platforms import Platform
from pushtrack.domain.status import Status


class StoreError(Exception):
    """The database failed (not the caller's input); the API answers 500."""


class ConflictError(Exception):
    """A write named something that does not exist or is in the wrong state."""


class App(msgspec.Struct, frozen=True):
    id: int
    code: str
    name: str
    account: str
    tracking: bool
    open_logging: bool
    device_token_required: bool
    created_at: int


class TokenInfo(msgspec.Struct, frozen=True):
    id: int
    account: str
    kind: str  # "server" | "device"
    prefix: str
    #: Application codes the token is limited to; None = every application of the account.
    apps: frozenset[str] | None
    #: Methods the token is limited to; None = every method of its kind.
    methods: frozenset[str] | None
    created_at: int
    revoked: bool


class DeviceIn(msgspec.Struct, frozen=True):
    hwid: str
    device_type: int
    push_token: str | None = None
    language: str | None = None
    timezone: int | None = None
    tags: dict[str, Any] | None = None
    user_id: str | None = None
    app_version: str | None = None
    device_model: str | None = None
    os_version: str | None = None


class Targeting(msgspec.Struct, frozen=True):
    #: Entries as the sender gave them (hwid or push token), order kept.
    devices: tuple[str, ...] | None = None
    platforms: tuple[int, ...] | None = None
    users: tuple[str, ...] | None = None


class MessagePlan(msgspec.Struct, frozen=True):
    """One validated notification of createMessage, ready to persist."""

    notification: dict[str, Any]  # the validated fields, for payload templates
    targeting: Targeting
    send_at: int  # microseconds, UTC
    campaign: str | None = None


class MessageCreated(msgspec.Struct, frozen=True):
    code: str
    id: int
    #: One per entry of ``targeting.devices`` (when tracking and devices were given).
    tracking_codes: list[str] | None


class LogQuery(msgspec.Struct, frozen=True):
    account: str
    apps: frozenset[str] | None = None  # token restriction
    message_id: int | None = None
    message_code: str | None = None
    campaign_code: str | None = None
    hwids: tuple[str, ...] | None = None
    user_id: str | None = None
    application_code: str | None = None
    date_from: int | None = None
    date_to: int | None = None
    statuses: tuple[Status, ...] | None = None
    platforms: tuple[Platform, ...] | None = None
    after: tuple[int, int] | None = None  # (ts, event id) cursor position
    limit: int = 1000


class LogRow(msgspec.Struct, frozen=True):
    event_id: int
    ts: int
    status: Status
    description: str
    application_code: str
    message_code: str
    message_id: int
    tracking_code: str
    hwid: str
    target_id: str
    user_id: str | None
    platform: int


class Store(Protocol):
    url: str
    #: The store's clock, microseconds UTC (injectable for tests of time rules).
    clock: Callable[[], int]

    async def close(self) -> None: ...

    # accounts, applications and tokens
    async def create_app(
        self,
        account: str,
        name: str,
        *,
        tracking: bool = True,
        open_logging: bool = True,
        device_token_required: bool = True,
    ) -> App: ...

    async def list_apps(self, account: str) -> list[App]: ...

    async def get_app(self, code: str) -> App | None: ...

    async def create_token(
        self,
        account: str,
        kind: str,
        token_hash: str,
        prefix: str,
        apps: Sequence[str] | None,
        methods: Sequence[str] | None,
    ) -> TokenInfo: ...

    async def find_token(self, token_hash: str) -> TokenInfo | None: ...

    async def list_tokens(self, account: str) -> list[TokenInfo]: ...

    async def revoke_tokens(self, account: str, prefix: str) -> int: ...

    # devices
    async def register_device(self, app: App, device: DeviceIn) -> None: ...

    async def unregister_device(self, app: App, hwid: str) -> bool: ...

    async def record_device_report(
        self, app: App, hwid: str, payload_hash: str, status: Status
    ) -> bool:
        """Record ``opened`` or device-confirmed ``delivered``; False if no such delivery."""
        ...

    # messages
    async def create_messages(self, app: App, plans: Sequence[MessagePlan]) -> list[MessageCreated]:
        """Everything of one createMessage request, in one transaction."""
        ...

    async def delete_message(self, account: str, apps: frozenset[str] | None, code: str) -> str:
        """Cancel what is not yet sent; the message's status after (ConflictError: unknown)."""
        ...

    # reading the trail
    async def message_log(self, query: LogQuery) -> list[LogRow]: ...
