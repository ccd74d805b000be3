-- depends: 0001_event_store
-- The relay's sweeper of payments left pending (consim.services.redrive): when each payment was
-- last published again to the processor, and how many times.

CREATE TABLE IF NOT EXISTS redrives (
    payment_id text        PRIMARY KEY,
    first_at   timestamptz NOT NULL DEFAULT now(),
    last_at    timestamptz NOT NULL DEFAULT now(),
    count      integer     NOT NULL DEFAULT 1 CHECK (count > 0)
);

-- The sweeper looks for payment streams that never got past their first event: the final
-- event is version 2, so a pending payment is a PaymentRequested with no version 2 beside it
-- (found through the UNIQUE (stream_id, version) index). This partial index keeps the scan of
-- requests by age to the requests, in age order.
CREATE INDEX IF NOT EXISTS events_payment_requested_recorded_at
    ON events (recorded_at) WHERE type = 'PaymentRequested';
