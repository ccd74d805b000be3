"""Kafka consumer: settles each PaymentRequested with the provider and records the outcome.

Records are handled one at a time (the trace of each continues on this thread); a record that
fails is reported in `batchItemFailures` and comes back, which is safe because processing is
idempotent: a payment already final is skipped, and a repeated charge gets the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from consim import observability as obs
from consim.adapters.envelope import TRACE_HEADER, from_envelope
from consim.adapters.event_store import EventStore
from consim.adapters.kafka_publisher import KafkaEventPublisher
from consim.adapters.postgres_event_store import PostgresEventStore
from consim.adapters.provider_attempts import (
    InMemoryProviderAttempts,
    PostgresProviderAttempts,
    ProviderAttempts,
)
from consim.adapters.provider_client import (
    DEFAULT,
    FALLBACK,
    HttpPaymentProvider,
    PaymentProvider,
)
from consim.adapters.trace_context import trace_metadata
from consim.config import settings
from consim.domain.payment import AUTHORIZED, DECLINED
from consim.services.processing import (
    ProviderRouter,
    RetryPolicy,
    Settler,
    process_payment,
)

processor = BatchProcessor(event_type=EventType.Kafka, raise_on_entire_batch_failure=False)


class OutOfTime(Exception):
    """Too little of the invocation is left to settle a payment in the worst case: the record
    is handed back for the next batch rather than cut off by the Lambda timeout."""


@dataclass
class Wiring:
    store: EventStore
    client: PaymentProvider
    settler: Settler
    policy: RetryPolicy


_wiring: Wiring | None = None


def wire(
    store: EventStore | None = None,
    client: PaymentProvider | None = None,
    instances: tuple[str, ...] = (DEFAULT, FALLBACK),
    intents: ProviderAttempts | None = None,
) -> Wiring:
    """Build (once per execution environment) what the handler needs; tests pass their own."""
    global _wiring
    config = settings()
    policy = RetryPolicy.from_settings(config)
    if store is None:
        publisher = KafkaEventPublisher(
            config.kafka_bootstrap, config.payment_events_topic, config.kafka_fast_path_timeout_s
        )
        store = PostgresEventStore.from_url(config.database_url, publisher)
    client = client or HttpPaymentProvider()
    router = ProviderRouter(client, policy, instances=instances)
    if intents is None:
        # The intent log lives beside the events, on the store's pool.
        intents = (
            PostgresProviderAttempts(store.pool)
            if isinstance(store, PostgresEventStore)
            else InMemoryProviderAttempts()
        )
    _wiring = Wiring(store, client, Settler(client, router, policy, intents=intents), policy)
    return _wiring


def _worst_case_ms(policy: RetryPolicy) -> int:
    """Every attempt at both instances timing out, with their backoff, then the status checks
    (at most three per instance: from the intent log before charging, after an uncertain error,
    and once every instance is exhausted)."""
    timeout_ms = settings().provider_timeout_ms
    backoff_s = sum(
        min(policy.backoff_cap_s, policy.backoff_s * 2 ** (retry - 1))
        for retry in range(1, policy.attempts)
    )
    per_instance_ms = policy.attempts * timeout_ms + backoff_s * 1000
    statuses_ms = 6 * (timeout_ms + policy.status_grace_s * 1000)
    return int(2 * per_instance_ms + statuses_ms)


def record_handler(record: KafkaEventRecord, lambda_context: Any = None) -> str:
    try:
        return _handle(record, lambda_context)
    except Exception as error:
        # The record goes back in batchItemFailures; say why, once, with where it sits.
        obs.logger.warning(
            "record failed, handed back",
            extra={
                "partition": f"{record.topic}-{record.partition}",
                "offset": record.offset,
                "error": type(error).__name__,
                "detail": str(error),
            },
        )
        raise


def _handle(record: KafkaEventRecord, lambda_context: Any) -> str:
    header = record.decoded_headers.get(TRACE_HEADER)
    trace_header = header.decode() if isinstance(header, bytes) else header
    event = from_envelope(record.json_value, trace_header)
    if event.type != "PaymentRequested":
        return "ignored"

    wiring = _wiring or wire()
    remaining = lambda_context.get_remaining_time_in_millis() if lambda_context else None
    if remaining is not None and remaining < _worst_case_ms(wiring.policy):
        raise OutOfTime(f"{remaining} ms left")

    payment_id = event.data["payment_id"]
    with obs.continue_trace(trace_header):
        obs.annotate(payment_id=payment_id, account_id=event.data.get("account_id"))
        metadata = {
            "client_id": event.data.get("client_id") or event.metadata.get("client_id"),
            "correlation_id": event.metadata.get("correlation_id") or payment_id,
            "causation_id": event.event_id,
            **trace_metadata(obs.current_trace_header() or trace_header),
        }
        result = process_payment(wiring.store, wiring.settler, payment_id, metadata)

    if result.outcome is None:
        obs.logger.info(
            "payment already final", extra={"payment_id": payment_id, "status": result.status}
        )
        return "already_final"
    obs.latency_ms(obs.PROVIDER_LATENCY, result.outcome.elapsed_ms)
    obs.count(
        {AUTHORIZED: obs.PAYMENTS_AUTHORIZED, DECLINED: obs.PAYMENTS_DECLINED}.get(
            result.status, obs.PAYMENTS_FAILED
        )
    )
    obs.logger.info(
        "payment settled",
        extra={
            "payment_id": payment_id,
            "status": result.status,
            "provider": result.outcome.provider,
            "reconciled": result.outcome.reconciled,
            "attempts": result.outcome.attempts,
            "recorded": len(result.recorded),
        },
    )
    return result.status


@obs.observed
def handler(event: dict, context: Any) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
