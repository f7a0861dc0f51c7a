"""SQLite schema, as forward-only migrations keyed by ``PRAGMA user_version``."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the foundation
    """
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE applications (
        id INTEGER PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        account_id INTEGER NOT NULL REFERENCES accounts (id),
        name TEXT NOT NULL,
        tracking INTEGER NOT NULL,
        open_logging INTEGER NOT NULL,
        device_token_required INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts (id),
        kind TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        apps TEXT,
        methods TEXT,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES applications (id),
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
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (app_id, hwid)
    );
    CREATE INDEX devices_token ON devices (app_id, push_token);
    CREATE INDEX devices_user ON devices (app_id, user_id);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        app_id INTEGER NOT NULL REFERENCES applications (id),
        campaign TEXT,
        notification TEXT NOT NULL,
        send_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        deliveries INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX messages_app ON messages (app_id, created_at);
    CREATE INDEX messages_created ON messages (created_at);
    CREATE TABLE payloads (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL,
        platform INTEGER NOT NULL,
        language TEXT,
        body TEXT NOT NULL,
        options TEXT NOT NULL
    );
    CREATE INDEX payloads_message ON payloads (message_id);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL,
        device_id INTEGER,
        payload_id INTEGER,
        tracking_code TEXT NOT NULL UNIQUE,
        target_id TEXT NOT NULL,
        hwid TEXT NOT NULL,
        user_id TEXT,
        platform INTEGER NOT NULL,
        hash TEXT,
        state INTEGER NOT NULL,
        opened INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER
    );
    CREATE INDEX deliveries_message ON deliveries (message_id);
    CREATE INDEX deliveries_hwid ON deliveries (hwid);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        delivery_id INTEGER NOT NULL,
        status INTEGER NOT NULL,
        description TEXT NOT NULL
    );
    CREATE INDEX events_delivery ON events (delivery_id);
    CREATE INDEX events_ts ON events (ts);
    CREATE TABLE counters (
        message_id INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        platform INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, hour, platform)
    ) WITHOUT ROWID;
    CREATE INDEX counters_hour ON counters (hour);
    CREATE TABLE counters_minute (
        message_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        platform INTEGER NOT NULL,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, minute, platform)
    ) WITHOUT ROWID;
    CREATE INDEX counters_minute_minute ON counters_minute (minute);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        account_id INTEGER,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        result TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        run_at INTEGER NOT NULL,
        lease_owner TEXT,
        lease_until INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX jobs_due ON jobs (state, run_at);
    CREATE TABLE gateways (
        app_id INTEGER NOT NULL REFERENCES applications (id),
        platform INTEGER NOT NULL,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (app_id, platform)
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        job_id INTEGER,
        account_id INTEGER REFERENCES accounts (id),
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX files_expiry ON files (expires_at);
    """,
    # 2: send_rate: when the next delivery of a throttled message may go (µs, UTC)
    """
    ALTER TABLE messages ADD COLUMN rate_at INTEGER;
    """,
    # 3: devices: what SDKs report beyond registration, and the events they post
    """
    ALTER TABLE devices ADD COLUMN tz_name TEXT;
    ALTER TABLE devices ADD COLUMN web_p256dh TEXT;
    ALTER TABLE devices ADD COLUMN web_auth TEXT;
    ALTER TABLE devices ADD COLUMN badge INTEGER;
    ALTER TABLE devices ADD COLUMN last_open INTEGER;
    CREATE TABLE device_events (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES applications (id),
        hwid TEXT NOT NULL,
        user_id TEXT,
        name TEXT NOT NULL,
        attributes TEXT NOT NULL,
        occurred_at INTEGER NOT NULL,
        local_time INTEGER,
        received_at INTEGER NOT NULL
    );
    CREATE INDEX device_events_name ON device_events (app_id, name, occurred_at);
    CREATE INDEX device_events_hwid ON device_events (app_id, hwid);
    """,
    # 4: tags (definitions per application, values in a table of their own) and saved filters
    """
    CREATE TABLE tag_defs (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES applications (id),
        name TEXT NOT NULL,
        type INTEGER NOT NULL,
        declared INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (app_id, name)
    );
    CREATE TABLE tag_values (
        device_id INTEGER NOT NULL,
        tag_id INTEGER NOT NULL,
        num INTEGER,
        txt TEXT
    );
    CREATE INDEX tag_values_device ON tag_values (device_id, tag_id, num, txt);
    CREATE INDEX tag_values_num ON tag_values (tag_id, num, device_id) WHERE num IS NOT NULL;
    CREATE INDEX tag_values_txt ON tag_values (tag_id, txt, device_id) WHERE txt IS NOT NULL;
    CREATE INDEX devices_app_id ON devices (app_id, id);
    CREATE TABLE saved_filters (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts (id),
        app_id INTEGER REFERENCES applications (id),
        name TEXT NOT NULL,
        expression TEXT NOT NULL,
        selection TEXT NOT NULL,
        conditions TEXT,
        operator TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (account_id, name)
    );
    -- Tags registerDevice kept as JSON in devices.tags before: typed rows in tag_values.
    -- A tag's type is that of its value on the oldest device holding it, and values of
    -- another type stay only in devices.tags, which is left as it was.
    INSERT INTO tag_defs (app_id, name, type, declared, created_at)
    SELECT d.app_id, j.key, MIN(d.id * 10 + CASE j.type WHEN 'integer' THEN 1 WHEN 'real' THEN 6
        WHEN 'text' THEN 2 WHEN 'array' THEN 3 WHEN 'true' THEN 5 WHEN 'false' THEN 5 END) % 10,
        0, MIN(d.updated_at)
    FROM devices d, json_each(d.tags) j
    WHERE d.tags IS NOT NULL AND json_type(d.tags) = 'object'
    GROUP BY d.app_id, j.key
    HAVING MIN(CASE WHEN j.type IN ('integer', 'real', 'text', 'array', 'true', 'false')
        THEN 1 END) IS NOT NULL;
    INSERT INTO tag_values (device_id, tag_id, num, txt)
    SELECT d.id, g.id, CASE g.type WHEN 1 THEN j.value WHEN 6 THEN CAST(ROUND(j.value * 1000000)
        AS INTEGER) WHEN 5 THEN (j.type = 'true') END, CASE g.type WHEN 2 THEN j.value END
    FROM devices d, json_each(d.tags) j JOIN tag_defs g ON g.app_id = d.app_id AND g.name = j.key
    WHERE d.tags IS NOT NULL AND json_type(d.tags) = 'object' AND (
        (g.type = 1 AND j.type = 'integer') OR (g.type = 6 AND j.type IN ('integer', 'real')
        AND abs(j.value) < 9000000000000) OR (g.type = 2 AND j.type = 'text')
        OR (g.type = 5 AND j.type IN ('true', 'false')));
    INSERT INTO tag_values (device_id, tag_id, num, txt)
    SELECT d.id, g.id, e.key, e.value
    FROM devices d, json_each(d.tags) j JOIN tag_defs g ON g.app_id = d.app_id AND g.name = j.key,
        json_each(j.value) e
    WHERE d.tags IS NOT NULL AND json_type(d.tags) = 'object' AND g.type = 3
        AND j.type = 'array' AND e.type = 'text';
    """,
    # 5: audience messages expand in a job (targeting kept with the message, a cursor)
    """
    ALTER TABLE messages ADD COLUMN targeting TEXT;
    ALTER TABLE messages ADD COLUMN local_time INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN expand_after INTEGER;
    CREATE UNIQUE INDEX deliveries_message_device ON deliveries (message_id, device_id);
    DROP INDEX deliveries_message;
    """,
    # 6: when the device last registered a push token (a gateway's "dead since" older
    # than that does not unsubscribe it)
    """
    ALTER TABLE devices ADD COLUMN token_at INTEGER;
    UPDATE devices SET token_at = updated_at WHERE push_token IS NOT NULL;
    """,
    # 7: a gateway whose credentials were refused is paused (its deliveries wait) until
    # its settings change or a probe succeeds
    """
    ALTER TABLE gateways ADD COLUMN paused_at INTEGER;
    ALTER TABLE gateways ADD COLUMN paused_reason TEXT;
    """,
    # 8: a counter may be kept in several rows (shard), summed when read: PostgreSQL
    # spreads concurrent transactions over them (store/events.py COUNTER_SHARDS); SQLite's
    # one writer keeps shard 0
    """
    CREATE TABLE counters_sharded (
        message_id INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        platform INTEGER NOT NULL,
        shard INTEGER NOT NULL DEFAULT 0,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, hour, platform, shard)
    ) WITHOUT ROWID;
    INSERT INTO counters_sharded (message_id, hour, platform, sends, deliveries, opens,
        inbox_opens, unshowable_sends, errors)
        SELECT message_id, hour, platform, sends, deliveries, opens, inbox_opens,
        unshowable_sends, errors FROM counters;
    DROP TABLE counters;
    ALTER TABLE counters_sharded RENAME TO counters;
    CREATE INDEX counters_hour ON counters (hour);
    CREATE TABLE counters_minute_sharded (
        message_id INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        platform INTEGER NOT NULL,
        shard INTEGER NOT NULL DEFAULT 0,
        sends INTEGER NOT NULL DEFAULT 0,
        deliveries INTEGER NOT NULL DEFAULT 0,
        opens INTEGER NOT NULL DEFAULT 0,
        inbox_opens INTEGER NOT NULL DEFAULT 0,
        unshowable_sends INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (message_id, minute, platform, shard)
    ) WITHOUT ROWID;
    INSERT INTO counters_minute_sharded (message_id, minute, platform, sends, deliveries, opens,
        inbox_opens, unshowable_sends, errors)
        SELECT message_id, minute, platform, sends, deliveries, opens, inbox_opens,
        unshowable_sends, errors FROM counters_minute;
    DROP TABLE counters_minute;
    ALTER TABLE counters_minute_sharded RENAME TO counters_minute;
    CREATE INDEX counters_minute_minute ON counters_minute (minute);
    """,
    # 9: a lean write path. A delivery's `created` status is its row's created_at (no
    # event row); tracking codes are derived from the delivery id and a MAC
    # under a server secret kept here (codes made before stay in legacy_code);
    # deliveries are found by device id (unknown entries by hwid, a partial index),
    # by user through user_devices (each user id a device's deliveries carried), by
    # campaign through messages; jobs name their message in a column of their own.
    """
    CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO server_secrets (name, value) VALUES ('tracking', lower(hex(randomblob(32))));
    CREATE TABLE deliveries_v7 (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL,
        device_id INTEGER,
        payload_id INTEGER,
        legacy_code TEXT,
        target_id TEXT NOT NULL,
        hwid TEXT NOT NULL,
        user_id TEXT,
        platform INTEGER NOT NULL,
        hash TEXT,
        state INTEGER NOT NULL,
        opened INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER,
        created_at INTEGER
    );
    INSERT INTO deliveries_v7 (id, message_id, device_id, payload_id, legacy_code, target_id,
        hwid, user_id, platform, hash, state, opened, attempts, next_at, created_at)
    SELECT id, message_id, device_id, payload_id, tracking_code, target_id, hwid, user_id,
        platform, hash, state, opened, attempts, next_at, (SELECT MIN(e.ts) FROM events e
        WHERE e.delivery_id = deliveries.id AND e.status = 1) FROM deliveries;
    DELETE FROM events WHERE status = 1;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v7 RENAME TO deliveries;
    CREATE UNIQUE INDEX deliveries_message_device ON deliveries (message_id, device_id);
    CREATE INDEX deliveries_device ON deliveries (device_id);
    CREATE INDEX deliveries_created ON deliveries (created_at);
    CREATE INDEX deliveries_unknown ON deliveries (hwid) WHERE device_id IS NULL;
    CREATE UNIQUE INDEX deliveries_legacy_code ON deliveries (legacy_code)
        WHERE legacy_code IS NOT NULL;
    CREATE TABLE user_devices (
        user_id TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, device_id)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO user_devices (user_id, device_id)
    SELECT DISTINCT user_id, device_id FROM deliveries
    WHERE user_id IS NOT NULL AND device_id IS NOT NULL;
    CREATE INDEX messages_campaign ON messages (campaign) WHERE campaign IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN message_id INTEGER;
    UPDATE jobs SET message_id = json_extract(params, '$.message_id')
    WHERE kind IN ('dispatch', 'expand_audience') AND json_valid(params);
    CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL;
    """,
    # 10: an honest funnel and the gateways' answers kept. A device's confirmation is a
    # fact of its own (deliveries.confirmed, the `confirmed` counter); the event that
    # records a gateway's answer keeps the gateway's message id and the failure class;
    # a delivery being retried keeps its last transient reason and class; every device
    # a gateway's answer unsubscribed is written to the dead-token ledger.
    """
    ALTER TABLE events ADD COLUMN gateway_id TEXT;
    ALTER TABLE events ADD COLUMN failure_class TEXT;
    ALTER TABLE deliveries ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN retry_reason TEXT;
    ALTER TABLE deliveries ADD COLUMN retry_class TEXT;
    ALTER TABLE counters ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE counters_minute ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE dead_tokens (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES applications (id),
        device_id INTEGER NOT NULL,
        hwid TEXT NOT NULL,
        push_token TEXT NOT NULL,
        platform INTEGER NOT NULL,
        reason TEXT NOT NULL,
        message_id INTEGER,
        delivery_id INTEGER,
        found_at INTEGER NOT NULL
    );
    CREATE INDEX dead_tokens_app ON dead_tokens (app_id, found_at);
    CREATE INDEX dead_tokens_found ON dead_tokens (found_at);
    """,
    # 11: on PostgreSQL, deliveries leave room in their pages for the two updates sending
    # makes of every row; SQLite updates a row in place, so there is nothing to change
    # here (the entry keeps both engines' migrations numbered alike).
    "",
    # 12: the dashboard groups a message's failures without reading its other deliveries,
    # and finds its latest deliveries without sorting them all.
    """
    CREATE INDEX deliveries_failed ON deliveries (message_id) WHERE state = 4;
    CREATE INDEX deliveries_message_latest ON deliveries (message_id, id);
    """,
    # 13: webhooks. Each endpoint of an application, its secret and its cursor in the
    # trail (``store/stream.py``): on SQLite a position is (ts, key), the single writer
    # taking ``ts`` inside the transaction, so positions come in commit order; the
    # writing transaction PostgreSQL records (``tx``) stays 0 here, the same columns.
    """
    ALTER TABLE events ADD COLUMN tx INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE deliveries ADD COLUMN tx INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        app_id INTEGER NOT NULL REFERENCES applications (id),
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        statuses TEXT,
        created_at INTEGER NOT NULL,
        cursor_at INTEGER NOT NULL,
        cursor_key INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        last_success_at INTEGER,
        failing_since INTEGER,
        failing INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        UNIQUE (app_id, url)
    );
    """,
    # 14: a delivery's events are indexed with their time, so a lookup bounded in time
    # (getMessageLog's events before the end of a full page of ``created``) tests each
    # delivery's events in the index instead of reading every one of them.
    """
    CREATE INDEX events_delivery_ts ON events (delivery_id, ts);
    DROP INDEX events_delivery;
    """,
    # 15: webhook signing secrets are stored sealed, as gateway private keys are
    # (``sealing.py``): ``secret`` holds the Fernet token when ``secret_sealed`` is 1.
    # Endpoints made before keep their plain secret (0) until ``pushtrack secrets seal``.
    """
    ALTER TABLE webhooks ADD COLUMN secret_sealed INTEGER NOT NULL DEFAULT 0;
    """,
    # 16: nothing here (SQLite has had ``deliveries_failed`` since migration 12; the
    # PostgreSQL migration 16 adds it there); the entry keeps both engines numbered alike.
    "",
    # 17: a delivery handed to a gateway whose outcome is not recorded yet is
    # marked (``in_flight``), set by the UPDATE that marks its batch ``sent`` and
    # cleared by the one that records its outcome. A run of a dispatch job that finds
    # it set knows a request may have been written by a worker that died or lost its
    # lease (docs/api.md §7.3).
    """
    ALTER TABLE deliveries ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
    """,
    # 18: nothing here (PostgreSQL's migration 18 drops an index of its own, for its
    # HOT updates; SQLite updates a row in place); the entry keeps both engines
    # numbered alike.
    "",
    # 19: a device's report names its delivery by (device, payload hash): the index
    # holds both, so the report's lookup reads the one delivery it names instead of
    # every delivery of the device in the retention window (a device sent ten pushes a
    # day keeps hundreds). ``hash`` is written once, with the delivery.
    """
    DROP INDEX deliveries_device;
    CREATE INDEX deliveries_device ON deliveries (device_id, hash);
    """,
]
