"""Kafka event source -> DynamoDB read models (consim-accounts, consim-payments)."""

from __future__ import annotations

from typing import Any

from consim.adapters.envelope import from_kafka_record, kafka_records, trace_header_of
from consim.adapters.read_models import ReadModels
from consim.observability import continue_trace, logger, observed
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
    # Each stream's projection joins the trace of the newest record seen for it (its payment's).
    newest = {r.stream_id: r for r in sorted(records, key=lambda r: r.version)}
    for head in heads(records):
        try:
            with continue_trace(trace_header_of(newest[head.stream_id])):
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
