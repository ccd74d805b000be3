-- The simulated payment provider's own world: its knobs and its ledger, apart from our event
-- store (a third party keeps its books in its own database; a schema stands in for that here).

CREATE SCHEMA IF NOT EXISTS provider;

-- One row per provider instance ("default", "fallback"); the app inserts the defaults on first use.
CREATE TABLE IF NOT EXISTS provider.knobs (
    provider              text PRIMARY KEY,
    -- 'lognormal' (median p50, 99th percentile p99) or 'fixed' (always p50).
    latency_distribution  text NOT NULL DEFAULT 'lognormal'
                          CHECK (latency_distribution IN ('lognormal', 'fixed')),
    latency_p50_ms        double precision NOT NULL DEFAULT 20 CHECK (latency_p50_ms >= 0),
    latency_p99_ms        double precision NOT NULL DEFAULT 80 CHECK (latency_p99_ms >= 0),
    failure_rate          double precision NOT NULL DEFAULT 0 CHECK (failure_rate BETWEEN 0 AND 1),
    decline_rate          double precision NOT NULL DEFAULT 0 CHECK (decline_rate BETWEEN 0 AND 1),
    -- Amounts whose decimal digits end with this suffix are always declined ('' = none).
    decline_amount_suffix text NOT NULL DEFAULT '',
    timeout_rate          double precision NOT NULL DEFAULT 0 CHECK (timeout_rate BETWEEN 0 AND 1),
    -- How long a "timed out" request sleeps after charging: longer than any sane client waits.
    timeout_ms            integer NOT NULL DEFAULT 5000 CHECK (timeout_ms >= 0),
    max_concurrency       integer NOT NULL DEFAULT 20 CHECK (max_concurrency BETWEEN 1 AND 1000),
    outage                boolean NOT NULL DEFAULT false,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Every decision the provider made. The primary key is what makes a repeated payment id
-- impossible to charge twice, whatever the number of concurrent requests carrying it.
CREATE TABLE IF NOT EXISTS provider.charges (
    provider     text NOT NULL,
    payment_id   text NOT NULL,
    provider_ref text NOT NULL UNIQUE,
    status       text NOT NULL CHECK (status IN ('authorized', 'declined')),
    amount       bigint NOT NULL CHECK (amount > 0),
    currency     text NOT NULL,
    fee          bigint NOT NULL DEFAULT 0,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, payment_id)
);

CREATE INDEX IF NOT EXISTS charges_provider_created_idx
    ON provider.charges (provider, created_at);
