-- The event store (append-only; the source of truth) and its transactional outbox.

CREATE TABLE IF NOT EXISTS events (
    position    bigserial   PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL CHECK (version > 0),
    event_id    uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The expected-version check: two appends of the same version, one wins, one fails.
    UNIQUE (stream_id, version)
);

-- The payments summary reads authorized payments by time.
CREATE INDEX IF NOT EXISTS events_type_recorded_at ON events (type, recorded_at);

-- One row per committed event not yet known to be on Kafka.
CREATE TABLE IF NOT EXISTS outbox (
    position   bigint      PRIMARY KEY REFERENCES events (position),
    created_at timestamptz NOT NULL DEFAULT now()
);
