"""From a batch of Kafka records to the notifications it calls for."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from consim.domain.errors import NotFound
from consim.domain.notifications import Notification, notification_from_envelope, status_of
from consim.observability import annotate, continue_trace, logger

from .records import KafkaRecord

# The amount and currency of a payment, given its id (they never change once requested).
PaymentFacts = Callable[[str], tuple[int, str]]


def notifications_of(records: Iterable[KafkaRecord], facts: PaymentFacts) -> list[Notification]:
    """One notification per status-changing event, in record order; other events are skipped.

    An event can be on the topic more than once (the outbox's fast path and the relay both
    published it, or the relay's sweeper re-drove it); only its first record in the batch counts,
    so a repeated `pending` cannot follow the outcome. Copies in later batches are the delivered
    set's business.

    The final events do not repeat the amount: it comes from the `PaymentRequested` earlier in
    the batch when there is one, or else from the payment's stream (`facts`).
    """
    notifications: list[Notification] = []
    known: dict[str, tuple[int, str]] = {}
    seen: set[str] = set()
    repeated = 0
    for record in records:
        envelope = record.envelope
        if status_of(envelope.get("type", "")) is None:
            continue
        if envelope["event_id"] in seen:
            repeated += 1
            continue
        seen.add(envelope["event_id"])
        with continue_trace(record.trace_header):
            data: dict[str, Any] = envelope["data"]
            payment_id = data["payment_id"]
            annotate(payment_id=payment_id, account_id=data.get("account_id"))
            if "amount" in data and "currency" in data:
                known[payment_id] = (int(data["amount"]), str(data["currency"]))
            elif payment_id not in known:
                try:
                    known[payment_id] = facts(payment_id)
                except NotFound:
                    # Retrying cannot make a payment appear: skip it rather than stall the
                    # partition behind a record that can never be notified.
                    logger.error("status of an unknown payment, not notified", extra=data)
                    continue
            amount, currency = known[payment_id]
            notifications.append(notification_from_envelope(envelope, amount, currency))
            logger.debug("status change to notify", extra={"event_id": envelope["event_id"]})
    if repeated:
        logger.info(
            "repeated records of an event in the batch, notified once",
            extra={"repeated_records": repeated},
        )
    return notifications
