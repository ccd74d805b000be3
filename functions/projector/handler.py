"""Kafka event source -> DynamoDB read models (consim-accounts, consim-payments)."""

from __future__ import annotations

from typing import Any

from consim.adapters.envelope import from_kafka_record, kafka_records
from consim.adapters.read_models import ReadModels
from consim.observability import logger, observed
from consim.services import bootstrap
from consim.services.projection import heads, project

_models = ReadModels()


class ProjectionFailed(Exception):
    pass


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    records = [from_kafka_record(r) for r in kafka_records(event)]
    store = bootstrap.event_store()
    applied, failed = 0, []
    for head in heads(records):
        try:
            applied += project(store, _models, head)
        except Exception:
            # Keep going: the other streams are independent. The batch is then failed as a
            # whole and redelivered; what was written already is skipped by version.
            logger.exception("projection failed", extra={"stream_id": head.stream_id})
            failed.append(head.stream_id)
    logger.info("projected", extra={"records": len(records), "applied": applied})
    if failed:
        raise ProjectionFailed(f"{len(failed)} streams failed: {', '.join(failed[:5])}")
    return {"records": len(records), "applied": applied}
