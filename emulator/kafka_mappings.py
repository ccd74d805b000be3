"""Kafka event source mappings: one consumer group and one thread per mapping.

A batch is at most BatchSize records gathered for at most the batching window. Offsets are
committed only once the records before them are done with, so a crash re-delivers rather than
loses. A failed batch is retried with backoff; with ReportBatchItemFailures only the records from
the first failure of each failed partition onwards are delivered again. After
MaximumRetryAttempts the records still failing go to the on-failure topic (the mapping's
`kafka://` destination, else the stack's dead-letter topic) with headers saying why and from
where, and the mapping moves past them.

Per-partition order holds because each partition's records of a batch go to one invocation at a
time, and a partition never moves past a record before it succeeded or was sent to the
on-failure topic. The partitions of a batch are delivered at once, one invocation each, as AWS
runs up to one invocation per partition; the next poll waits for the slowest of them.

Failure headers on the on-failure topic: x-failure-reason (RetriesExhausted), x-failure-error
(the function's errorType: errorMessage), x-failure-source (<topic>-<partition>@<offset>),
x-failure-function, x-failure-attempts. The record's own key, value and headers are kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from consim.config import KAFKA_RECONNECT_BACKOFF_MAX_MS
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from emulator.invokers import Invoker, Outcome
from emulator.kafka_events import (
    InvalidBatchResponse,
    KafkaRecord,
    first_failed_offsets,
    kafka_event,
    remaining_after,
)
from emulator.logs import get_logger
from emulator.template import KafkaEvent, Template

log = get_logger("emulator.kafka_mappings")

MAX_BACKOFF_S = 8.0
SESSION_TIMEOUT_MS = 10_000
Batch = dict[str, list[KafkaRecord]]


def backoff_seconds(attempt: int) -> float:
    return min(MAX_BACKOFF_S, 0.25 * 2 ** max(0, attempt - 1))


def _record(raw: Any) -> KafkaRecord:
    return KafkaRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        timestamp=raw.timestamp,
        timestamp_type=raw.timestamp_type,
        key=raw.key,
        value=raw.value,
        headers=tuple(raw.headers or ()),
    )


@dataclass
class MappingStats:
    batches: int = 0
    records_delivered: int = 0
    retries: int = 0
    dead_lettered: int = 0


class KafkaMapping(threading.Thread):
    def __init__(
        self,
        function: str,
        mapping: KafkaEvent,
        invoker: Invoker,
        bootstrap_servers: Sequence[str],
        dead_letter_topic: str,
    ) -> None:
        super().__init__(name=f"kafka-{function}-{mapping.name}", daemon=True)
        self.function = function
        self.mapping = mapping
        self.invoker = invoker
        self.bootstrap_servers = list(bootstrap_servers)
        self.failure_topic = mapping.on_failure_topic or dead_letter_topic
        self.stats = MappingStats()
        self.ready = threading.Event()  # set once partitions are assigned
        self._stopping = threading.Event()
        self._producer: KafkaProducer | None = None
        self._producer_lock = threading.Lock()

    def stop(self) -> None:
        self._stopping.set()

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._consume()
            except Exception:
                log.exception("kafka mapping failed, restarting", extra=self._log_fields())
                self._stopping.wait(2)

    def _consume(self) -> None:
        consumer = KafkaConsumer(
            *self.mapping.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.mapping.consumer_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest"
            if self.mapping.starting_position == "TRIM_HORIZON"
            else "latest",
            max_poll_records=self.mapping.batch_size,
            max_poll_interval_ms=1_800_000,  # retries of a slow function may take a while
            # A consumer that dies while the broker is away cannot say LeaveGroup, and the
            # restarted broker loads it back as a member: the next consumer of the mapping then
            # waits in the rebalance until that ghost's session expires. kafka-python's 45 s
            # default held the notifier's partitions 45 s after a broker restart (measured in
            # the broker-outage scenario). The broker accepts sessions from 6 s; heartbeats run on
            # the client's own thread, so a long invocation does not end the session.
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 3,
            # A topic created after the mapping started is noticed within seconds, not minutes.
            metadata_max_age_ms=5_000,
            client_id=self.name,
            reconnect_backoff_max_ms=KAFKA_RECONNECT_BACKOFF_MAX_MS,
        )
        log.info(
            "kafka mapping started",
            extra={**self._log_fields(), "group": self.mapping.consumer_group_id},
        )
        try:
            while not self._stopping.is_set():
                batch = self._collect(consumer)
                if consumer.assignment():
                    self.ready.set()
                if batch:
                    self._deliver_by_partition(consumer, batch)
        finally:
            consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None

    def _collect(self, consumer: KafkaConsumer) -> Batch:
        batch: Batch = {}
        count = 0
        deadline: float | None = None
        while count < self.mapping.batch_size and not self._stopping.is_set():
            wait = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            polled = consumer.poll(
                timeout_ms=int(wait * 1000), max_records=self.mapping.batch_size - count
            )
            for raw_records in polled.values():
                for raw in raw_records:
                    record = _record(raw)
                    batch.setdefault(record.partition_key, []).append(record)
                    count += 1
            if not count:
                return batch
            if deadline is None:
                deadline = time.monotonic() + self.mapping.batching_window_s
            if time.monotonic() >= deadline:
                break
        return batch

    def _deliver_by_partition(self, consumer: KafkaConsumer, batch: Batch) -> None:
        """Each partition of the batch in its own invocation, the partitions at once (as AWS
        runs up to one invocation per partition); offsets are committed from this thread
        only, since a consumer is not thread-safe."""
        parts = [{key: records} for key, records in batch.items()]
        if len(parts) == 1:
            done = [self._deliver(parts[0])]
        else:
            with ThreadPoolExecutor(len(parts), thread_name_prefix=self.name) as pool:
                done = list(pool.map(self._deliver, parts))
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(next_offset, "", -1)
            for positions in done
            for topic, partition, next_offset in positions.values()
        }
        if offsets:
            self._commit(consumer, offsets)

    def _commit(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, Any]) -> None:
        """Commit on the same consumer until the broker takes it. With the broker down, a new
        consumer would join as a new member while the restarted broker still counts the old
        one, and the mapping would wait out that ghost's session; the same consumer rejoins as
        itself and resumes at once. A rebalance that took the partitions away is final: the
        new owner gets the records again."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                consumer.commit(offsets)
                return
            except CommitFailedError:
                raise
            except KafkaError as exc:
                attempt += 1
                log.warning(
                    "offset commit failed, retrying",
                    extra={**self._log_fields(), "attempt": attempt, "error": str(exc)},
                )
                self._stopping.wait(min(KAFKA_RECONNECT_BACKOFF_MAX_MS / 1000, 0.1 * 2**attempt))

    def _deliver(self, batch: Batch) -> dict[str, tuple[str, int, int]]:
        """Deliver until done, retrying what fails; returns, per partition, the offset to
        commit (the next record to read) once the records before it are done with."""
        done: dict[str, tuple[str, int, int]] = {}
        pending = batch
        attempt = 0
        while pending and not self._stopping.is_set():
            self.stats.batches += 1
            self.stats.records_delivered += sum(len(r) for r in pending.values())
            outcome = self._invoke(pending)
            if outcome.ok:
                try:
                    first_failed = (
                        first_failed_offsets(outcome.payload, pending)
                        if self.mapping.report_batch_item_failures
                        else {}
                    )
                except InvalidBatchResponse as exc:
                    log.warning(
                        "invalid batch response", extra={**self._log_fields(), "error": str(exc)}
                    )
                    first_failed = {key: records[0].offset for key, records in pending.items()}
                    outcome = Outcome(
                        False, {"errorType": "InvalidBatchResponse", "errorMessage": str(exc)}
                    )
                for key, records in pending.items():
                    next_offset = first_failed.get(key, records[-1].offset + 1)
                    if next_offset > records[0].offset:
                        done[key] = (records[0].topic, records[0].partition, next_offset)
                pending = remaining_after(pending, first_failed)
                if not pending:
                    break
            if outcome.throttled:
                self._stopping.wait(1)  # a throttle is not the function's failure: no attempt used
                continue

            attempt += 1
            self.stats.retries += 1
            limit = self.mapping.maximum_retry_attempts
            if 0 <= limit < attempt:
                self._send_to_failure_topic(pending, outcome, attempt)
                for key, records in pending.items():
                    done[key] = (records[0].topic, records[0].partition, records[-1].offset + 1)
                break
            log.warning(
                "batch failed, retrying",
                extra={
                    **self._log_fields(),
                    "attempt": attempt,
                    "error_type": outcome.error_type,
                    "partitions": {k: [r[0].offset, r[-1].offset] for k, r in pending.items()},
                },
            )
            self._stopping.wait(backoff_seconds(attempt))
        return done

    def _invoke(self, batch: Batch) -> Outcome:
        event = kafka_event(
            batch, self.bootstrap_servers, self.mapping.source, self.mapping.event_source_arn
        )
        try:
            return self.invoker.invoke(self.function, event)
        except Exception as exc:  # the invoke itself failed: counts as a failed batch
            log.warning("invoke failed", extra={**self._log_fields(), "error": repr(exc)})
            return Outcome(False, {"errorType": type(exc).__name__, "errorMessage": str(exc)})

    def _send_to_failure_topic(self, batch: Batch, outcome: Outcome, attempts: int) -> None:
        with self._producer_lock:  # partitions fail in threads of their own
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    acks="all",
                    reconnect_backoff_max_ms=KAFKA_RECONNECT_BACKOFF_MAX_MS,
                )
        error = outcome.payload if isinstance(outcome.payload, dict) else {}
        reason = f"{error.get('errorType', 'Unknown')}: {error.get('errorMessage', '')}"[:1000]
        futures = []
        for records in batch.values():
            for record in records:
                headers = [
                    *record.headers,
                    ("x-failure-reason", b"RetriesExhausted"),
                    ("x-failure-error", reason.encode()),
                    ("x-failure-source", f"{record.partition_key}@{record.offset}".encode()),
                    ("x-failure-function", self.function.encode()),
                    ("x-failure-attempts", str(attempts).encode()),
                ]
                futures.append(
                    self._producer.send(
                        self.failure_topic, key=record.key, value=record.value, headers=headers
                    )
                )
        for future in futures:
            future.get(timeout=30)
        self.stats.dead_lettered += len(futures)
        log.error(
            "records sent to the on-failure topic",
            extra={**self._log_fields(), "topic": self.failure_topic, "count": len(futures)},
        )

    def _log_fields(self) -> dict[str, Any]:
        return {"function": self.function, "mapping": self.mapping.name}


class KafkaMappings:
    """Every Kafka mapping of a template, started and stopped together."""

    def __init__(
        self,
        template: Template,
        invoker: Invoker,
        bootstrap_override: str | None,
        dead_letter_topic: str,
    ) -> None:
        self.threads = [
            # By FunctionName: the name the function has where it is deployed (bridge mode).
            KafkaMapping(
                spec.function_name,
                mapping,
                invoker,
                _bootstrap(mapping, bootstrap_override),
                dead_letter_topic,
            )
            for spec in template.functions.values()
            for mapping in spec.kafka_events
        ]

    def start(self) -> KafkaMappings:
        for thread in self.threads:
            thread.start()
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        return all(t.ready.wait(max(0.0, deadline - time.monotonic())) for t in self.threads)

    def stop(self, timeout_s: float = 10) -> None:
        for thread in self.threads:
            thread.stop()
        for thread in self.threads:
            thread.join(timeout_s)


def _bootstrap(mapping: KafkaEvent, override: str | None) -> list[str]:
    # MSK names a cluster ARN, not servers; natively both kinds read the local broker.
    if mapping.source == "MSK" or not mapping.bootstrap_servers:
        return (override or "127.0.0.1:9092").split(",")
    return [s for server in mapping.bootstrap_servers for s in server.split(",")]
