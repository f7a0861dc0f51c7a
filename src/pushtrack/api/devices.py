"""Device methods: registerDevice, unregisterDevice, pushStat, messageDeliveryEvent."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from pushtrack.api.context import Call
from pushtrack.api.errors import ArgumentError
from pushtrack.domain.platforms import ACCEPTED
from pushtrack.domain.status import Status
from pushtrack.store.base import DeviceIn
from pushtrack.store.targeting import TagError

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
LongText = Annotated[str, msgspec.Meta(max_length=4096)]
_LANGUAGE = re.compile(r"^[A-Za-z]{2}$")
MAX_TZ = 18 * 3600


class RegisterDevice(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    hwid: Text
    device_type: int
    push_token: LongText | None = None
    language: str | None = None
    timezone: int | None = None
    tags: dict[str, Any] | None = None
    userId: Text | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    device_model: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    os_version: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class UnregisterDevice(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    hwid: Text


class DeviceReport(msgspec.Struct, forbid_unknown_fields=True):
    application: Text
    hwid: Text
    hash: Text
    metaData: dict[str, Any] | None = None


async def register_device(call: Call, r: RegisterDevice) -> None:
    app = await call.device_app_for(r.application)
    if r.device_type not in ACCEPTED:
        raise ArgumentError(f"device_type: {r.device_type} is not a known device type")
    if r.language is not None and not _LANGUAGE.match(r.language):
        raise ArgumentError("language: must be a two-letter language code")
    if r.timezone is not None and abs(r.timezone) > MAX_TZ:
        raise ArgumentError("timezone: offset in seconds must be within ±18 hours")
    device = DeviceIn(
        hwid=r.hwid,
        device_type=r.device_type,
        push_token=r.push_token or None,
        language=r.language.lower() if r.language else None,
        timezone=r.timezone,
        tags=r.tags,
        user_id=r.userId,
        app_version=r.app_version,
        device_model=r.device_model,
        os_version=r.os_version,
    )
    try:
        await call.ctx.store.register_device(app, device)
    except TagError as exc:
        raise ArgumentError(f"tags: {exc.message}") from None


async def unregister_device(call: Call, r: UnregisterDevice) -> None:
    app = await call.device_app_for(r.application)
    await call.ctx.store.unregister_device(app, r.hwid)


async def _report(call: Call, r: DeviceReport, status: Status) -> None:
    app = await call.device_app_for(r.application)
    # An unknown hash is answered like a known one: SDKs retry on errors, and a
    # report about a delivery that aged out of retention is not the device's fault.
    await call.ctx.store.record_device_report(app, r.hwid, r.hash, status)


async def push_stat(call: Call, r: DeviceReport) -> None:
    await _report(call, r, Status.OPENED)


async def message_delivery_event(call: Call, r: DeviceReport) -> None:
    await _report(call, r, Status.DELIVERED)
