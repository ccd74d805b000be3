"""Scheduled: publish the outbox rows the API's fast path did not (Kafka down, process killed),
then re-drive payments left pending (consim.services.redrive: why that is safe, and why it never
decides a payment itself)."""

from __future__ import annotations

from typing import Any

from consim.observability import logger, observed
from consim.services import bootstrap
from consim.services.redrive import PendingSweeper, RedrivePolicy


def sweeper() -> PendingSweeper:
    return PendingSweeper(
        bootstrap.event_store().pool, bootstrap.kafka_publisher(), RedrivePolicy.from_settings()
    )


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    relay = bootstrap.outbox_relay()
    published = relay.publish_pending()
    pending = relay.pending()
    if published or pending:
        logger.info("outbox relayed", extra={"published": published, "pending": pending})
    # After the outbox pass: a request still in the outbox is the relay's, not the sweeper's.
    # A failing sweep is logged and retried next tick; it must not cost the outbox its pass.
    try:
        redriven = len(sweeper().sweep())
    except Exception:
        logger.exception("re-driving pending payments failed")
        redriven = 0
    return {"published": published, "pending": pending, "redriven": redriven}
