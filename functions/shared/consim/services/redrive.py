"""Eventual finality: payments left pending are handed to the processor again.

A payment is final once the processor appends its outcome. Until then it is `pending`, and some
paths leave it there with nobody coming back: a record that exhausted its retries and went to the
dead-letter topic, a provider that could not say whether it charged (the record is handed back
until the event source gives up), a PaymentRequested that never reached Kafka at all. The relay
runs this sweeper on its schedule: every payment whose last event is still its PaymentRequested,
older than PENDING_REDRIVE_AFTER_S, is published again, at most once per
PENDING_REDRIVE_INTERVAL_S per payment.

Why re-driving is safe: the processor is idempotent (a payment already final is skipped before
any provider is asked, and the outcome append checks the expected versions, so two deliveries
cannot both record), and the provider keys charges by payment id: a repeated request is refused
with the original charge (409), never charged twice. A re-drive that races the original record
therefore costs a lookup, not money.

Why the sweeper never records `failed` itself: "pending" means we do not know what the provider
did. If the sweeper gave up and released the funds, a charge the provider did make (a timed-out
request that went through, an instance that was unreachable for a while) would become a charge
without a record. Only the processor, which asks the provider (and asks every instance for the
payment before it calls one failed), decides. The sweeper just keeps asking it to.

The interval is tracked in the `redrives` table (payment id, first and last re-drive, count);
its row is written in the transaction that found the payment, after Kafka acknowledged the
record, so a failed publish leaves the payment due at the next tick. A transaction-scoped
advisory lock lets one sweeper work at a time, the next one waiting for it and then finding its
marks (the relay runs with a concurrency of one, but a manual run or an overlapping tick must
not publish everything twice).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg_pool import ConnectionPool

from consim import observability as obs
from consim.adapters.event_store import EventPublisher
from consim.adapters.postgres_event_store import EVENT_COLUMNS, row_to_event
from consim.config import Settings, settings

logger = logging.getLogger(__name__)

PAYMENTS_REDRIVEN = "PaymentsRedriven"
SWEEPER_LOCK = "consim-redrive-sweeper"
STUCK_AFTER = 10  # re-drives after which each further one is logged as an error

# The final event of a payment is its version 2, so "pending" is a PaymentRequested with no
# later version on its stream (an index probe on UNIQUE (stream_id, version)). A request that
# still has an outbox row was never published: the relay's outbox pass owns it, not this one.
_DUE = f"""
SELECT {", ".join("e." + c.strip() for c in EVENT_COLUMNS.split(","))},
       extract(epoch FROM %(now)s - e.recorded_at) AS age_s,
       coalesce(r.count, 0) AS redriven
  FROM events e
  LEFT JOIN redrives r ON r.payment_id = e.data ->> 'payment_id'
 WHERE e.type = 'PaymentRequested'
   AND e.recorded_at < %(now)s - %(after)s
   AND NOT EXISTS (
       SELECT 1 FROM events f WHERE f.stream_id = e.stream_id AND f.version > e.version)
   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.position = e.position)
   AND (r.last_at IS NULL OR r.last_at <= %(now)s - %(interval)s)
   AND (%(only)s::text[] IS NULL OR e.data ->> 'payment_id' = ANY(%(only)s::text[]))
 ORDER BY e.recorded_at
 LIMIT %(batch)s
"""

_MARK = """
INSERT INTO redrives (payment_id, first_at, last_at, count)
SELECT unnest(%(ids)s::text[]), %(now)s, %(now)s, 1
    ON CONFLICT (payment_id) DO UPDATE
   SET last_at = excluded.last_at, count = redrives.count + 1
"""


@dataclass(frozen=True)
class RedrivePolicy:
    after: timedelta = timedelta(seconds=30)  # pending this long: the processor is asked again
    interval: timedelta = timedelta(seconds=60)  # at most one re-drive per payment per interval
    batch: int = 100  # per sweep: a backlog is worked off over several ticks, oldest first

    @classmethod
    def from_settings(cls, config: Settings | None = None) -> RedrivePolicy:
        config = config or settings()
        return cls(
            after=timedelta(seconds=config.pending_redrive_after_s),
            interval=timedelta(seconds=config.pending_redrive_interval_s),
            batch=max(1, config.pending_redrive_batch),
        )


@dataclass(frozen=True)
class Redriven:
    payment_id: str
    account_id: str
    age_s: float  # how long the payment had been pending
    count: int  # re-drives of this payment so far, this one included


class PendingSweeper:
    def __init__(
        self, pool: ConnectionPool, publisher: EventPublisher, policy: RedrivePolicy | None = None
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self.policy = policy or RedrivePolicy()

    def sweep(
        self, now: datetime | None = None, payment_ids: Collection[str] | None = None
    ) -> list[Redriven]:
        """Publish every due pending payment's PaymentRequested again; return what was re-driven.

        `now` stands in for the database clock (tests); `payment_ids` limits the sweep to those
        payments (tests, or an operator re-driving by hand). Waits for a sweeper already
        running, then sees what it marked.
        """
        with self._pool.connection() as conn, conn.transaction():
            # Waiting (not skipping) keeps a test's or an operator's sweep from coming back empty
            # because the scheduled one was busy; the wait is bounded by the other's publish.
            conn.execute("SET LOCAL lock_timeout = '10s'")
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [SWEEPER_LOCK])
            clock = conn.execute(
                "SELECT coalesce(%s::timestamptz, now()) AS now", [now]
            ).fetchone()["now"]
            rows = conn.execute(
                _DUE,
                {
                    "now": clock,
                    "after": self.policy.after,
                    "interval": self.policy.interval,
                    "batch": self.policy.batch,
                    "only": list(payment_ids) if payment_ids is not None else None,
                },
            ).fetchall()
            if not rows:
                return []
            events = [row_to_event(row) for row in rows]
            # Only what Kafka acknowledged is marked; the rest stays due for the next tick.
            acknowledged = set(self._publisher.publish(events))
            redriven = [
                Redriven(
                    payment_id=event.data["payment_id"],
                    account_id=event.data.get("account_id", ""),
                    age_s=float(row["age_s"]),
                    count=row["redriven"] + 1,
                )
                for event, row in zip(events, rows, strict=True)
                if event.position in acknowledged
            ]
            conn.execute(_MARK, {"ids": [r.payment_id for r in redriven], "now": clock})

        for item in redriven:
            obs.count(PAYMENTS_REDRIVEN)
            # Re-driven again and again, a payment needs a person: an instance down for good, a
            # record the processor cannot handle. It stays pending (see the module doc), loudly.
            log = obs.logger.error if item.count >= STUCK_AFTER else obs.logger.warning
            log(
                "pending payment re-driven",
                extra={
                    "payment_id": item.payment_id,
                    "account_id": item.account_id,
                    "pending_s": round(item.age_s, 1),
                    "redrives": item.count,
                },
            )
        if len(redriven) < len(events):
            logger.warning(
                "re-drive publish incomplete: %d of %d acknowledged", len(redriven), len(events)
            )
        return redriven
