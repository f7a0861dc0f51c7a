"""``pushtrack secrets``: the keys that seal gateway private keys and webhook signing
secrets at rest (sealing.py)."""

from __future__ import annotations

from typing import Any

import typer

from pushtrack.cli.common import (
    AsJson,
    Database,
    emit,
    fail,
    load_settings,
    require_database,
    with_store,
)
from pushtrack.sealing import Sealer, SealingError, is_sealed, new_key, plain_fields, unseal
from pushtrack.store import Store

group = typer.Typer(
    help="Keys sealing gateway private keys and webhook secrets at rest.", no_args_is_help=True
)


@group.command("new-key")
def new_key_command(as_json: AsJson = False) -> None:
    """Print a new key (for PUSHTRACK_SECRET_KEY or a line of secret_key_file)."""
    key = new_key()
    emit(as_json, {"key": key}, key)


@group.command("seal")
def seal(database: Database = None, as_json: AsJson = False) -> None:
    """Seal every plain gateway private key and webhook secret; re-seal sealed ones with
    the first key.

    Put a new key in front of the old ones, then run this to move every key to it."""
    settings = load_settings(database)
    require_database(settings)  # before a key file is made beside a mistyped path
    try:
        sealer = Sealer.load(settings, create=True)
    except (SealingError, OSError) as exc:
        fail(str(exc))
    if sealer is None:
        fail("no secret key: set PUSHTRACK_SECRET_KEY or secret_key_file")

    async def run(store: Store) -> dict[str, int]:
        counts = {"sealed": 0, "resealed": 0, "webhooks_sealed": 0, "webhooks_resealed": 0}
        for app in await store.all_apps():
            for platform, (kind, config, _) in (await store.dispatch.gateways(app.id)).items():
                had_plain = bool(plain_fields(kind, config))
                had_sealed = any(is_sealed(v) for v in config.values())
                if not (had_plain or had_sealed):
                    continue
                fresh = sealer.seal(kind, unseal(kind, config, sealer))
                if await store.dispatch.reseal_gateway(app.id, platform, config, fresh):
                    counts["sealed" if had_plain else "resealed"] += 1
        for hook in await store.webhooks.all():
            plain = (
                sealer.open_value(hook.secret, f"webhook {hook.url} secret")
                if hook.secret_sealed
                else hook.secret
            )
            if await store.webhooks.reseal(hook.id, hook.secret, sealer.seal_text(plain)):
                counts["webhooks_resealed" if hook.secret_sealed else "webhooks_sealed"] += 1
        return counts

    try:
        counts: dict[str, Any] = with_store(database, run)
    except SealingError as exc:
        fail(str(exc))
    emit(
        as_json,
        counts,
        f"sealed {counts['sealed']} gateway(s) stored in plain text,"
        f" re-sealed {counts['resealed']} with the first key;"
        f" sealed {counts['webhooks_sealed']} webhook secret(s) stored in plain text,"
        f" re-sealed {counts['webhooks_resealed']}",
    )
