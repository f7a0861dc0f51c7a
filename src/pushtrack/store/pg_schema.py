"""PostgreSQL schema, as forward-only migrations recorded in ``schema_version``.

The logical schema is the one of ``store/schema.py`` (same tables, same
column names, so the transaction functions of ``store/`` run unchanged);
only the types differ: BIGINT ids and timestamps (microseconds), INTEGER
flags and enums (the SQL compares them with ``= 1``), TEXT for JSON.

``events`` is range-partitioned by UTC day on ``ts`` (see
``store/pg_partitions.py``); its primary key must therefore hold ``ts``, and
that key, ``(ts, id)``, is also the index by time. The engine keeps the
partitions of today and the next days ready, and makes a missing one when an
insert needs it.

Migrations run in one transaction under an advisory lock, so any number of
processes may start at once: the first applies what is missing, the others
wait for it and then find nothing left to do.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import scalar_row

from pushtrack.domain.timeutil import now_us

#: pg_advisory_xact_lock key of migrations ("pushtrack" in ASCII, then 1).
MIGRATE_LOCK = 0x7075736874726101

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE accounts (
        id BIGSERIAL PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE applications (
        id BIGSERIAL PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        account_id BIGINT NOT NULL REFERENCES accounts (id),
        name TEXT NOT NULL,
        tracking INTEGER NOT NULL,
        open_logging INTEGER NOT NULL,
        device_token_required INTEGER NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE api_tokens (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts (id),
        kind TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        apps TEXT,
        methods TEXT,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    CREATE TABLE devices (
        id BIGSERIAL PRIMARY KEY,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        hwid TEXT NOT NULL,
        push_token TEXT,
        device_type INTEGER NOT NULL,
        language TEXT,
        timezone INTEGER,
        tags TEXT,
        user_id TEXT,
        app_version TEXT,
        device_model TEXT,
        os_version TEXT,
        subscribed INTEGER NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        UNIQUE (app_id, hwid)
    );
    CREATE INDEX devices_token ON devices (app_id, push_token);
    CREATE INDEX devices_user ON devices (app_id, user_id);
    CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        campaign TEXT,
        notification TEXT NOT NULL,
        send_at BIGINT NOT NULL,
        status TEXT NOT NULL,
        deliveries INTEGER NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX messages_app ON messages (app_id, created_at);
    CREATE INDEX messages_created ON messages (created_at);
    CREATE TABLE payloads (
        id BIGSERIAL PRIMARY KEY,
        message_id BIGINT NOT NULL,
        platform INTEGER NOT NULL,
        language TEXT,
        body TEXT NOT NULL,
        options TEXT NOT NULL
    );
    CREATE INDEX payloads_message ON payloads (message_id);
    CREATE TABLE deliveries (
        id BIGSERIAL PRIMARY KEY,
        message_id BIGINT NOT NULL,
        device_id BIGINT,
        payload_id BIGINT,
        tracking_code TEXT NOT NULL UNIQUE,
        target_id TEXT NOT NULL,
        hwid TEXT NOT NULL,
        user_id TEXT,
        platform INTEGER NOT NULL,
        hash TEXT,
        state INTEGER NOT NULL,
        opened INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at BIGINT
    );
    CREATE INDEX deliveries_message ON deliveries (message_id);
    CREATE INDEX deliveries_hwid ON deliveries (hwid);
    CREATE TABLE events (
        id BIGSERIAL NOT NULL,
        ts BIGINT NOT NULL,
        delivery_id BIGINT NOT NULL,
        status INTEGER NOT NULL,
        description TEXT NOT NULL,
        PRIMARY KEY (ts, id)
    ) PARTITION BY RANGE (ts);
    CREATE INDEX events_delivery ON events (delivery_id);
    CREATE TABLE counters (
        message_id BIGINT NOT NULL,
        hour BIGINT NOT NULL,
        platform INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, hour, platform)
    );
    CREATE INDEX counters_hour ON counters (hour);
    CREATE TABLE counters_minute (
        message_id BIGINT NOT NULL,
        minute BIGINT NOT NULL,
        platform INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, minute, platform)
    );
    CREATE INDEX counters_minute_minute ON counters_minute (minute);
    CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        account_id BIGINT,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        run_at BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX jobs_due ON jobs (state, run_at);
    CREATE TABLE gateways (
        app_id BIGINT NOT NULL REFERENCES applications (id),
        platform INTEGER NOT NULL,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (app_id, platform)
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        job_id BIGINT,
        account_id BIGINT REFERENCES accounts (id),
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        size BIGINT NOT NULL,
        rows BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX files_expiry ON files (expires_at);
    """,
    # 2: send_rate: when the next delivery of a throttled message may go (µs, UTC)
    """
    ALTER TABLE messages ADD COLUMN rate_at BIGINT;
    """,
    # 3: devices: what SDKs report beyond registration, and the events they post
    """
    ALTER TABLE devices ADD COLUMN tz_name TEXT;
    ALTER TABLE devices ADD COLUMN web_p256dh TEXT;
    ALTER TABLE devices ADD COLUMN web_auth TEXT;
    ALTER TABLE devices ADD COLUMN badge INTEGER;
    ALTER TABLE devices ADD COLUMN last_open BIGINT;
    CREATE TABLE device_events (
        id BIGSERIAL PRIMARY KEY,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        hwid TEXT NOT NULL,
        user_id TEXT,
        name TEXT NOT NULL,
        attributes TEXT NOT NULL,
        occurred_at BIGINT NOT NULL,
        local_time BIGINT,
        received_at BIGINT NOT NULL
    );
    CREATE INDEX device_events_name ON device_events (app_id, name, occurred_at);
    CREATE INDEX device_events_hwid ON device_events (app_id, hwid);
    """,
    # 4: tags (definitions per application, values in a table of their own) and saved filters
    """
    CREATE TABLE tag_defs (
        id BIGSERIAL PRIMARY KEY,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        name TEXT NOT NULL,
        type INTEGER NOT NULL,
        declared INTEGER NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (app_id, name)
    );
    CREATE TABLE tag_values (
        device_id BIGINT NOT NULL,
        tag_id BIGINT NOT NULL,
        num BIGINT,
        txt TEXT
    );
    CREATE INDEX tag_values_device ON tag_values (device_id, tag_id, num, txt);
    CREATE INDEX tag_values_num ON tag_values (tag_id, num, device_id) WHERE num IS NOT NULL;
    CREATE INDEX tag_values_txt ON tag_values (tag_id, txt, device_id) WHERE txt IS NOT NULL;
    CREATE INDEX devices_app_id ON devices (app_id, id);
    CREATE TABLE saved_filters (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts (id),
        app_id BIGINT REFERENCES applications (id),
        name TEXT NOT NULL,
        expression TEXT NOT NULL,
        selection TEXT NOT NULL,
        conditions TEXT,
        operator TEXT,
        created_at BIGINT NOT NULL,
        UNIQUE (account_id, name)
    );
    -- Tags registerDevice kept as JSON in devices.tags before: typed rows in tag_values.
    -- A tag's type is that of its value on the oldest device holding it, and values of
    -- another type stay only in devices.tags, which is left as it was.
    CREATE TEMPORARY TABLE old_tags ON COMMIT DROP AS
    SELECT d.id AS device_id, d.app_id, d.updated_at, j.key, j.value,
        CASE jsonb_typeof(j.value)
            WHEN 'number' THEN CASE WHEN j.value::text ~ '^-?[0-9]{1,18}$' THEN 1 ELSE 6 END
            WHEN 'string' THEN 2 WHEN 'array' THEN 3 WHEN 'boolean' THEN 5 END AS kind
    FROM devices d CROSS JOIN LATERAL jsonb_each(CASE WHEN d.tags IS NOT NULL
        AND jsonb_typeof(d.tags::jsonb) = 'object' THEN d.tags::jsonb ELSE '{}'::jsonb END) j;
    INSERT INTO tag_defs (app_id, name, type, declared, created_at)
    SELECT app_id, key, MIN(device_id * 10 + kind) % 10, 0, MIN(updated_at)
    FROM old_tags WHERE kind IS NOT NULL GROUP BY app_id, key;
    INSERT INTO tag_values (device_id, tag_id, num, txt)
    SELECT o.device_id, g.id,
        CASE g.type WHEN 1 THEN (o.value::text)::bigint
            WHEN 6 THEN round((o.value::text)::numeric * 1000000)::bigint
            WHEN 5 THEN CASE WHEN o.value::text = 'true' THEN 1 ELSE 0 END END,
        CASE g.type WHEN 2 THEN o.value #>> '{}' END
    FROM old_tags o JOIN tag_defs g ON g.app_id = o.app_id AND g.name = o.key
    WHERE (g.type = 1 AND o.kind = 1) OR (g.type = 2 AND o.kind = 2)
        OR (g.type = 5 AND o.kind = 5) OR (g.type = 6 AND CASE WHEN o.kind IN (1, 6)
        THEN abs((o.value::text)::numeric) < 9000000000000 ELSE false END);
    INSERT INTO tag_values (device_id, tag_id, num, txt)
    SELECT o.device_id, g.id, e.n - 1, e.value #>> '{}'
    FROM old_tags o JOIN tag_defs g ON g.app_id = o.app_id AND g.name = o.key
        CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN o.kind = 3 THEN o.value
            ELSE '[]'::jsonb END) WITH ORDINALITY e(value, n)
    WHERE g.type = 3 AND jsonb_typeof(e.value) = 'string';
    """,
    # 5: audience messages expand in a job (targeting kept with the message, a cursor)
    """
    ALTER TABLE messages ADD COLUMN targeting TEXT;
    ALTER TABLE messages ADD COLUMN local_time INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN expand_after BIGINT;
    CREATE UNIQUE INDEX deliveries_message_device ON deliveries (message_id, device_id);
    DROP INDEX deliveries_message;
    """,
    # 6: when the device last registered a push token (a gateway's "dead since" older
    # than that does not unsubscribe it)
    """
    ALTER TABLE devices ADD COLUMN token_at BIGINT;
    UPDATE devices SET token_at = updated_at WHERE push_token IS NOT NULL;
    """,
    # 7: a gateway whose credentials were refused is paused (its deliveries wait) until
    # its settings change or a probe succeeds
    """
    ALTER TABLE gateways ADD COLUMN paused_at BIGINT;
    ALTER TABLE gateways ADD COLUMN paused_reason TEXT;
    """,
    # 8: a counter may be kept in several rows (shard), summed when read: concurrent
    # transactions bumping the same counter spread over them instead of committing one
    # at a time on its row (store/events.py COUNTER_SHARDS)
    """
    ALTER TABLE counters ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters DROP CONSTRAINT counters_pkey;
    ALTER TABLE counters ADD PRIMARY KEY (message_id, hour, platform, shard);
    ALTER TABLE counters_minute ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters_minute DROP CONSTRAINT counters_minute_pkey;
    ALTER TABLE counters_minute ADD PRIMARY KEY (message_id, minute, platform, shard);
    """,
    # 9: a lean write path (see the SQLite migration 9): `created` carried by the
    # delivery row (created_at), derived tracking codes under a
    # server secret (old codes kept in legacy_code), deliveries by device id, by user
    # through user_devices, by campaign through messages; jobs name their message.
    """
    CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO server_secrets (name, value)
    VALUES ('tracking', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
    ALTER TABLE deliveries RENAME COLUMN tracking_code TO legacy_code;
    ALTER TABLE deliveries ALTER COLUMN legacy_code DROP NOT NULL;
    ALTER TABLE deliveries DROP CONSTRAINT deliveries_tracking_code_key;
    CREATE UNIQUE INDEX deliveries_legacy_code ON deliveries (legacy_code)
        WHERE legacy_code IS NOT NULL;
    DROP INDEX deliveries_hwid;
    ALTER TABLE deliveries ADD COLUMN created_at BIGINT;
    UPDATE deliveries d SET created_at = e.ts FROM events e
    WHERE e.delivery_id = d.id AND e.status = 1;
    DELETE FROM events WHERE status = 1;
    CREATE INDEX deliveries_created ON deliveries (created_at);
    CREATE INDEX deliveries_device ON deliveries (device_id);
    CREATE INDEX deliveries_unknown ON deliveries (hwid) WHERE device_id IS NULL;
    CREATE TABLE user_devices (
        user_id TEXT NOT NULL,
        device_id BIGINT NOT NULL,
        PRIMARY KEY (user_id, device_id)
    );
    INSERT INTO user_devices (user_id, device_id)
    SELECT DISTINCT user_id, device_id FROM deliveries
    WHERE user_id IS NOT NULL AND device_id IS NOT NULL ON CONFLICT DO NOTHING;
    CREATE INDEX messages_campaign ON messages (campaign) WHERE campaign IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN message_id BIGINT;
    UPDATE jobs SET message_id = (params::jsonb ->> 'message_id')::bigint
    WHERE kind IN ('dispatch', 'expand_audience');
    CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL;
    """,
    # 10: an honest funnel and the gateways' answers kept (see the SQLite migration 10);
    # the new columns of the partitioned events table reach every partition.
    """
    ALTER TABLE events ADD COLUMN gateway_id TEXT;
    ALTER TABLE events ADD COLUMN failure_class TEXT;
    ALTER TABLE deliveries ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN retry_reason TEXT;
    ALTER TABLE deliveries ADD COLUMN retry_class TEXT;
    ALTER TABLE counters ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters_minute ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE dead_tokens (
        id BIGSERIAL PRIMARY KEY,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        device_id BIGINT NOT NULL,
        hwid TEXT NOT NULL,
        push_token TEXT NOT NULL,
        platform INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message_id BIGINT,
        delivery_id BIGINT,
        found_at BIGINT NOT NULL
    );
    CREATE INDEX dead_tokens_app ON dead_tokens (app_id, found_at);
    CREATE INDEX dead_tokens_found ON dead_tokens (found_at);
    """,
    # 11: deliveries fill a third of each page, so that sending (created -> sent ->
    # delivered/failed: two updates of every row, of columns no index holds) puts both
    # new versions of a row in its page (HOT) instead of writing a new entry in each of
    # its indexes; the versions it replaces would take that room anyway until vacuumed
    """
    ALTER TABLE deliveries SET (fillfactor = 34);
    """,
    # 12: the dashboard finds a message's latest deliveries without sorting them all. No
    # partial index on failed deliveries here (SQLite has one): an index naming
    # ``state`` would make every status change a non-HOT update (see 11).
    """
    CREATE INDEX deliveries_message_latest ON deliveries (message_id, id);
    """,
    # 13: webhooks (see the SQLite migration 13). A transaction can commit after a later
    # one, so a reader of ids or times could pass a row committed late: every trail row
    # (an event, a delivery's ``created``) records the transaction that wrote it (``tx``,
    # never updated; rows written before read 0), and cursors read only below the oldest
    # transaction still open (``store/stream.py``).
    """
    ALTER TABLE events ADD COLUMN tx BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE events ALTER COLUMN tx SET DEFAULT (pg_current_xact_id()::text::bigint);
    CREATE INDEX events_tx ON events (tx, id);
    ALTER TABLE deliveries ADD COLUMN tx BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ALTER COLUMN tx SET DEFAULT (pg_current_xact_id()::text::bigint);
    CREATE INDEX deliveries_tx ON deliveries (tx, id);
    CREATE TABLE webhooks (
        id BIGSERIAL PRIMARY KEY,
        app_id BIGINT NOT NULL REFERENCES applications (id),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        statuses TEXT,
        created_at BIGINT NOT NULL,
        cursor_at BIGINT NOT NULL,
        cursor_key BIGINT NOT NULL,
        delivered BIGINT NOT NULL DEFAULT 0,
        last_success_at BIGINT,
        failing_since BIGINT,
        failing INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        UNIQUE (app_id, url)
    );
    """,
    # 14: nothing here (the SQLite migration 14 indexes a delivery's events with their
    # time; here each daily partition's index by delivery is small, and the bound on
    # time prunes partitions); the entry keeps both engines' migrations numbered alike.
    "",
    # 15: webhook signing secrets are stored sealed (see the SQLite migration 15).
    """
    ALTER TABLE webhooks ADD COLUMN secret_sealed INTEGER NOT NULL DEFAULT 0;
    """,
    # 16: a message's failed deliveries without reading its others (the dashboard groups
    # its failures: a 1,000,000-delivery message read every delivery), as SQLite's
    # migration 12 does.
    """
    CREATE INDEX deliveries_failed ON deliveries (message_id) WHERE state = 4;
    """,
    # 17: a delivery handed to a gateway whose outcome is not recorded yet is
    # marked (``in_flight``; see the SQLite migration). A constant default: no rewrite
    # of the table, and the column is in no index, so sending's updates stay HOT.
    """
    ALTER TABLE deliveries ADD COLUMN in_flight SMALLINT NOT NULL DEFAULT 0;
    """,
    # 18: no index may name ``state``: with migration 16's partial index (WHERE state
    # = 4) no change of a delivery's state was a HOT update any more, so every sent
    # and delivered wrote a new entry into each of the deliveries' indexes
    # (dispatch-sandbox with two workers: ~50,000 → ~24,000 deliveries/s). The
    # dashboard's failure groups read the message's deliveries by message_id again.
    """
    DROP INDEX IF EXISTS deliveries_failed;
    """,
    # 19: a device's report names its delivery by (device, payload hash) (see the
    # SQLite migration). ``hash`` is written once, with the delivery, so the index
    # keeps sending's updates HOT.
    """
    DROP INDEX deliveries_device;
    CREATE INDEX deliveries_device ON deliveries (device_id, hash);
    """,
]


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the database to the newest schema; the number of migrations applied.

    ``conn`` must be idle (not inside a transaction); it is left idle.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
        applied = (
            conn.cursor(row_factory=scalar_row)
            .execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetchone()
        )
        current = int(applied or 0)
        for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute(script.encode())
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                (number, now_us()),
            )
        return len(MIGRATIONS) - current if current < len(MIGRATIONS) else 0
