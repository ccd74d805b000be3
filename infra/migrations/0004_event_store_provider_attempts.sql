-- depends: 0003_event_store_redrives
-- The processor's intent log (consim.adapters.provider_attempts): before each charge request,
-- which instance a payment is submitted to. A later delivery of the payment (Kafka retry, the
-- sweeper's re-drive) reads it and asks those instances for the payment before charging
-- anywhere, so a charge made by a delivery that died before recording is found, not doubled.

CREATE TABLE IF NOT EXISTS provider_attempts (
    payment_id text        NOT NULL,
    provider   text        NOT NULL,
    first_at   timestamptz NOT NULL DEFAULT now(),
    last_at    timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 1 CHECK (attempts > 0),
    PRIMARY KEY (payment_id, provider)
);
