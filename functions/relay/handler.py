"""Scheduled: publish the outbox rows the API's fast path did not (Kafka down, process killed)."""

from __future__ import annotations

from typing import Any

from consim.observability import logger, observed
from consim.services import bootstrap


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    relay = bootstrap.outbox_relay()
    published = relay.publish_pending()
    pending = relay.pending()
    if published or pending:
        logger.info("outbox relayed", extra={"published": published, "pending": pending})
    return {"published": published, "pending": pending}
