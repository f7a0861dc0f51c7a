"""``pushtrack doctor``: what is wrong with this installation, in plain words.

Checks the configuration, the store (reachable, migrations current), the files
folder (writable) and every application's gateway settings (each key is loaded:
an APNs .p8 key signs a provider token, an FCM service account and a VAPID key
load). It sends nothing and changes nothing (opening the store applies pending
migrations, as every pushtrack command does); the exit status is 1 when any check
failed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from pushtrack import config
from pushtrack.cli.common import AsJson, Database, console, emit
from pushtrack.domain.platforms import name_of
from pushtrack.sealing import Sealer, SealingError, open_text, plain_fields, unseal
from pushtrack.store import StoreError, open_store
from pushtrack.store.sqlite import sqlite_path

commands = typer.Typer()


@dataclass
class Check:
    what: str
    ok: bool
    detail: str


def _files(settings: config.Settings) -> Check:
    folder = Path(settings.files_dir)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("files", False, f"{folder}: cannot write export files ({exc.strerror or exc})")
    free = os.statvfs(folder)
    mb = free.f_bavail * free.f_frsize // 2**20
    return Check("files", True, f"{folder.absolute()} is writable ({mb} MB free)")


def _missing_sqlite_file(settings: config.Settings) -> Path | None:
    if not settings.database.startswith("sqlite:"):
        return None
    path = Path(sqlite_path(settings.database))
    return None if path.exists() else path


async def _store_checks(settings: config.Settings) -> list[Check]:
    from pushtrack.delivery.registry import parse_config  # loads the crypto stack

    try:
        store = open_store(settings.database)
    except StoreError as exc:
        return [Check("store", False, str(exc))]
    out: list[Check] = []
    try:
        applied, known = await store.schema_versions()
        if applied == known:
            out.append(Check("store", True, f"reachable, schema at migration {applied}"))
        else:
            out.append(
                Check(
                    "store",
                    False,
                    f"schema at migration {applied}, this pushtrack expects {known}"
                    " (start pushtrack serve once to migrate)",
                )
            )
        try:
            sealer = Sealer.load(settings)
        except SealingError as exc:
            out.append(Check("secret key", False, str(exc)))
            sealer = None
        apps = await store.all_apps()
        gateways = 0
        for app in apps:
            for platform, (kind, stored, _) in sorted(
                (await store.dispatch.gateways(app.id)).items()
            ):
                gateways += 1
                what = f"gateway {app.code} {name_of(platform)} ({kind})"
                try:
                    parse_config(kind, unseal(kind, stored, sealer))
                except ValueError as exc:
                    out.append(Check(what, False, str(exc)))
                    continue
                plain = plain_fields(kind, stored)
                if plain:
                    out.append(
                        Check(
                            what,
                            False,
                            f"{', '.join(plain)} stored in plain text (pushtrack secrets seal)",
                        )
                    )
                else:
                    out.append(Check(what, True, "settings valid, keys load"))
        for hook in await store.webhooks.all():
            what = f"webhook {hook.application_code} {hook.url}"
            if not hook.secret_sealed:
                out.append(
                    Check(what, False, "secret stored in plain text (pushtrack secrets seal)")
                )
                continue
            try:
                open_text(hook.secret, "secret", sealer)
            except SealingError as exc:
                out.append(Check(what, False, str(exc)))
            else:
                out.append(Check(what, True, "secret sealed, the key opens it"))
        if not apps:
            out.append(Check("applications", True, "none yet (pushtrack app create)"))
        elif not gateways:
            out.append(
                Check(
                    "gateways",
                    False,
                    f"{len(apps)} application(s), no gateway set: nothing can be sent"
                    " (pushtrack app set-gateway)",
                )
            )
    except StoreError as exc:
        out.append(Check("store", False, str(exc)))
    finally:
        await store.close()
    return out


@commands.command()
def doctor(database: Database = None, as_json: AsJson = False) -> None:
    """Check the configuration, store, files folder, gateway settings and webhook secrets;
    say what is wrong."""
    checks: list[Check] = []
    try:
        settings = config.load({"database": database})
    except (ValueError, OSError) as exc:
        checks.append(Check("configuration", False, str(exc)))
    else:
        shown: dict[str, Any] = settings.redacted()
        checks.append(Check("configuration", True, f"database {shown['database']}"))
        checks.append(_files(settings))
        missing = _missing_sqlite_file(settings)
        if missing:
            checks.append(Check("store", False, f"{missing} does not exist (check --database)"))
        else:
            checks.extend(asyncio.run(_store_checks(settings)))
    failed = [c for c in checks if not c.ok]
    if as_json:
        emit(True, {"ok": not failed, "checks": [vars(c) for c in checks]}, "")
    else:
        for c in checks:
            mark = "[green]ok[/green]  " if c.ok else "[red]FAIL[/red]"
            console.print(f"{mark} {c.what}: {c.detail}", highlight=False, soft_wrap=True)
        console.print(
            f"{len(failed)} problem(s) found." if failed else "No problems found.", highlight=False
        )
    if failed:
        raise SystemExit(1)
