"""``Store``: the typed face of the database that the API, workers and CLI use.

Each method names one unit of work and hands the matching transaction function
(``store/accounts.py``, ``store/devices.py``, ``store/reports.py`` and their
siblings) to the engine. Engines differ only in how they run transactions, never
in what a unit of work does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from pushtrack.domain.status import Status
from pushtrack.store import accounts, message_log, messages, pg_schema, reports, schema
from pushtrack.store.base import (
    App,
    DeviceIn,
    Engine,
    LogQuery,
    LogRow,
    MessageCreated,
    MessagePlan,
    TokenInfo,
    Tx,
)
from pushtrack.store.batch import Batcher
from pushtrack.store.dashboard import DashboardStore
from pushtrack.store.deadtokens import DeadTokenStore
from pushtrack.store.devices import DeviceStore, register_device, unregister_device
from pushtrack.store.dispatch import DispatchStore
from pushtrack.store.expansion import ExpansionStore
from pushtrack.store.exports import ExportStore
from pushtrack.store.jobs import JobStore
from pushtrack.store.retention import RetentionStore
from pushtrack.store.stats import StatsStore
from pushtrack.store.stream import StreamStore, time_horizon
from pushtrack.store.targeting import TargetingStore
from pushtrack.store.webhooks import WebhookStore


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.jobs = JobStore(engine)
        self.dispatch = DispatchStore(engine)
        self.expansion = ExpansionStore(engine)
        self.exports = ExportStore(engine)
        self.stats = StatsStore(engine)
        self.retention = RetentionStore(engine)
        self.devices = DeviceStore(engine)
        self.dead_tokens = DeadTokenStore(engine)
        self.dashboard = DashboardStore(engine)
        self._reports = Batcher(
            engine,
            reports.record_device_reports,
            in_flight=engine.batches_in_flight,
            statements_whole=True,
        )
        self.targeting = TargetingStore(engine)
        self.webhooks = WebhookStore(engine)
        self.stream = StreamStore(engine)

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def clock(self) -> Callable[[], int]:
        return self.engine.clock

    async def close(self) -> None:
        await self.engine.close()

    async def schema_versions(self) -> tuple[int, int]:
        """(migrations applied, migrations known): whether the store answers and is current."""
        return await self.engine.read(_schema_versions)

    # -- accounts, applications, tokens ---------------------------------------------------

    async def create_app(
        self,
        account: str,
        name: str,
        *,
        tracking: bool = True,
        open_logging: bool = True,
        device_token_required: bool = True,
    ) -> App:
        return await self.engine.write(
            partial(
                accounts.create_app,
                account=account,
                name=name,
                tracking=tracking,
                open_logging=open_logging,
                token_required=device_token_required,
            )
        )

    async def has_accounts(self) -> bool:
        """Does the store hold any account yet (a first start finds none)?"""
        return await self.engine.read(accounts.has_accounts)

    async def list_apps(self, account: str) -> list[App]:
        return await self.engine.read(partial(accounts.list_apps, account=account))

    async def all_apps(self) -> list[App]:
        return await self.engine.read(accounts.all_apps)

    async def get_app(self, code: str) -> App | None:
        return await self.engine.read(partial(accounts.get_app, code=code))

    async def create_token(
        self,
        account: str,
        kind: str,
        token_hash: str,
        prefix: str,
        apps: Sequence[str] | None,
        methods: Sequence[str] | None,
    ) -> TokenInfo:
        return await self.engine.write(
            partial(
                accounts.create_token,
                account=account,
                kind=kind,
                token_hash=token_hash,
                prefix=prefix,
                apps=apps,
                methods=methods,
            )
        )

    async def find_token(self, token_hash: str) -> TokenInfo | None:
        return await self.engine.read(partial(accounts.find_token, token_hash=token_hash))

    async def list_tokens(self, account: str) -> list[TokenInfo]:
        return await self.engine.read(partial(accounts.list_tokens, account=account))

    async def revoke_tokens(self, account: str, prefix: str) -> int:
        return await self.engine.write(
            partial(accounts.revoke_tokens, account=account, prefix=prefix)
        )

    # -- devices --------------------------------------------------------------------------

    async def register_device(self, app: App, device: DeviceIn) -> None:
        await self.devices.write(partial(register_device, app=app, d=device))

    async def unregister_device(self, app: App, hwid: str) -> bool:
        return await self.devices.write(partial(unregister_device, app=app, hwid=hwid))

    async def record_device_report(
        self, app: App, hwid: str, payload_hash: str, status: Status
    ) -> bool:
        """Record ``opened`` or device-confirmed ``delivered``; False if no such delivery.

        Reports arriving together are written together (``store/batch.py``).
        """
        report = reports.Report(app.id, app.open_logging, hwid, payload_hash, status)
        return await self._reports.submit(report)

    # -- messages -------------------------------------------------------------------------

    async def create_messages(self, app: App, plans: Sequence[MessagePlan]) -> list[MessageCreated]:
        """One createMessage request, in one transaction.

        Messages to explicit devices are written whole; audience messages are
        recorded with the job that expands them (``store.expansion``).
        """
        return await self.create_messages_for([(app, plan) for plan in plans])

    async def create_messages_for(
        self, items: Sequence[tuple[App, MessagePlan]]
    ) -> list[MessageCreated]:
        """Messages of several applications (each ``(app, plan)``), in one transaction.

        Targets are read and deliveries planned first, outside the write
        transaction (``messages.prepare_messages``); the writer then only writes,
        and tracking codes are derived from the ids it gave after the commit.
        """
        prepared = await self.engine.read(partial(messages.prepare_messages, items=items))
        written = await self.engine.write(partial(messages.write_messages, prepared=prepared))
        return messages.created(prepared, written)

    async def delete_message(self, account: str, apps: frozenset[str] | None, code: str) -> str:
        """Cancel what is not yet sent (ConflictError: unknown or already ended)."""
        return await self.engine.write(
            partial(messages.delete_message, account=account, apps=apps, code=code)
        )

    # -- reading the trail ----------------------------------------------------------------

    async def message_log(self, query: LogQuery) -> list[LogRow]:
        return await self.engine.read(partial(message_log.message_log, q=query))

    async def message_log_page(self, query: LogQuery) -> tuple[list[LogRow], int | None]:
        """``message_log``, and the time below which no row will commit any more
        (``stream.time_horizon``, read first): rows at or after it may yet be joined by
        rows committed late, so a page shows none of them."""

        def page(t: Tx) -> tuple[list[LogRow], int | None]:
            top = time_horizon(t)
            return message_log.message_log(t, query), top

        return await self.engine.read(page)


def _schema_versions(tx: Tx) -> tuple[int, int]:
    """(migrations applied to this database, migrations this code knows): a cheap query."""
    if tx.dialect == "sqlite":
        applied = tx.scalar("PRAGMA user_version")
        known = len(schema.MIGRATIONS)
    else:
        applied = tx.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        known = len(pg_schema.MIGRATIONS)
    return int(applied or 0), known
