"""Reading the evidence the invariants need out of the real system.

Event store (Postgres), read models (DynamoDB), the provider's ledger (its admin API) and the
payment-events topic (Kafka, read from the beginning without a consumer group). Each reader is
blocking I/O; the run calls them in threads so its event loop keeps serving the receivers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import boto3
import psycopg
import requests
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from consim.config import Settings
from psycopg.rows import dict_row

from simulator.invariants import FINAL_TYPES

log = logging.getLogger("consim.simulator")

ADMIN_ATTEMPTS = 5
_EVENT_COLUMNS = "position, stream_id, version, event_id::text AS event_id, type, data, recorded_at"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


class EventStoreReader:
    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        with psycopg.connect(self._url, row_factory=dict_row, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def events_of(self, account_ids: Iterable[str], payment_ids: Iterable[str]) -> list[dict]:
        """Every event of the accounts and of their payments (found through FundsReserved too,
        so a payment whose 201 we never saw is still checked)."""
        account_streams = [f"account-{a}" for a in account_ids]
        rows = self._query(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ANY(%s) ORDER BY position",
            (account_streams,),
        )
        pids = set(payment_ids)
        pids |= {
            r["data"]["payment_id"]
            for r in rows
            if r["type"] == "FundsReserved" and (r["data"] or {}).get("payment_id")
        }
        payment_rows = self._query(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE stream_id = ANY(%s) ORDER BY position",
            ([f"payment-{p}" for p in pids],),
        )
        events = []
        for row in sorted(rows + payment_rows, key=lambda r: r["position"]):
            row["recorded_at"] = row["recorded_at"].isoformat()
            events.append(row)
        return events

    def reserved_payment_ids(self, account_ids: Iterable[str]) -> set[str]:
        """The payments these accounts reserved funds for."""
        rows = self._query(
            "SELECT data->>'payment_id' AS payment_id FROM events "
            "WHERE stream_id = ANY(%s) AND type = 'FundsReserved'",
            ([f"account-{a}" for a in account_ids],),
        )
        return {r["payment_id"] for r in rows}

    def pending_payment_ids(
        self, account_ids: Iterable[str], payment_ids: Iterable[str]
    ) -> set[str]:
        """Payments of these accounts (reserved, or answered 201) with no final event yet."""
        candidates = self.reserved_payment_ids(account_ids) | set(payment_ids)
        return candidates - self.final_payment_ids(candidates)

    def final_payment_ids(self, payment_ids: Iterable[str]) -> set[str]:
        streams = [f"payment-{p}" for p in payment_ids]
        if not streams:
            return set()
        rows = self._query(
            "SELECT DISTINCT stream_id FROM events WHERE stream_id = ANY(%s) AND type = ANY(%s)",
            (streams, list(FINAL_TYPES)),
        )
        return {r["stream_id"][len("payment-") :] for r in rows}


class ReadModelReader:
    def __init__(self, config: Settings) -> None:
        self._config = config
        self._client = boto3.client(
            "dynamodb",
            endpoint_url=config.dynamodb_endpoint or None,
            region_name=config.aws_region,
            aws_access_key_id="test" if config.dynamodb_endpoint else None,
            aws_secret_access_key="test" if config.dynamodb_endpoint else None,
            config=Config(retries={"max_attempts": 3}, connect_timeout=3, read_timeout=10),
        )
        self._types = TypeDeserializer()

    def _batch_get(self, table: str, key: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 100):
            pending = {table: {"Keys": [{key: {"S": i}} for i in ids[start : start + 100]]}}
            while pending:
                answer = self._client.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(table, []):
                    plain = {k: _plain(self._types.deserialize(v)) for k, v in item.items()}
                    found[plain[key]] = plain
                pending = answer.get("UnprocessedKeys") or {}
        return found

    def payments(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self._batch_get(self._config.table("payments"), "payment_id", sorted(ids))

    def accounts(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self._batch_get(self._config.table("accounts"), "account_id", sorted(ids))


class ProviderAdmin:
    """The simulated provider's admin API (knobs, ledger), per instance."""

    def __init__(self, config: Settings) -> None:
        self._base = config.provider_url.rstrip("/")
        self._headers = {"x-admin-token": config.provider_admin_token}

    def _url(self, provider: str, path: str) -> str:
        return f"{self._base}/{provider}/admin/{path}"

    def _call(self, method: str, provider: str, path: str, **kwargs: Any) -> Any:
        """One admin call, retried while the provider is throttled (429) or cold (5xx): its
        concurrency cap applies to admin calls too, and a loaded run keeps it busy."""
        for attempt in range(ADMIN_ATTEMPTS):
            response = requests.request(
                method, self._url(provider, path), headers=self._headers, timeout=30, **kwargs
            )
            if response.status_code != 429 and response.status_code < 500:
                break
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        return response.json()

    def knobs(self, provider: str) -> dict[str, Any]:
        return self._call("GET", provider, "knobs")

    def set_knobs(self, provider: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", provider, "knobs", json=changes)

    def charges(self, provider: str) -> list[dict[str, Any]]:
        charges: list[dict[str, Any]] = []
        after = ""
        while True:
            page = self._call("GET", provider, "charges", params={"after": after, "limit": 1000})
            page = page["charges"]
            charges += page
            if len(page) < 1000:
                return charges
            after = page[-1]["payment_id"]

    def ledger(self, provider: str, payment_ids: set[str]) -> dict[str, Any]:
        """This run's authorized charges at the provider (the ledger holds other runs' too)."""
        ours = [
            c
            for c in self.charges(provider)
            if c["payment_id"] in payment_ids and c["status"] == "authorized"
        ]
        return {
            "scope": "run",
            "count": len(ours),
            "amount": sum(int(c["amount"]) for c in ours),
            "charges": [{"payment_id": c["payment_id"], "amount": c["amount"]} for c in ours],
        }


class TopicReader:
    """Every event id on the payment-events topic, read from the beginning of each partition.

    Partitions are assigned by hand (no group), so reading leaves no committed offsets behind and
    cannot steal partitions from the functions' consumer groups. The reader remembers how far it
    got, so the settle loop's repeated reads only fetch what arrived since (the topic holds every
    run's events; decoding all of them each second would load a small machine for nothing).
    """

    def __init__(self, config: Settings, timeout_s: float = 30.0) -> None:
        self._config = config
        self._timeout_s = timeout_s
        self._next: dict[int, int] = {}  # partition -> next offset to read
        self._ids: list[str] = []

    def event_ids(self) -> list[str]:
        from kafka import KafkaConsumer, TopicPartition

        topic = self._config.payment_events_topic
        consumer = KafkaConsumer(
            bootstrap_servers=self._config.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            request_timeout_ms=15000,
        )
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                if tp.partition in self._next:
                    consumer.seek(tp, self._next[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
            ends = consumer.end_offsets(assigned)
            deadline = time.monotonic() + self._timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in assigned):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} took over {self._timeout_s}s")
                for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                    for record in records:
                        self._keep(topic, record.value)
            self._next = {tp.partition: consumer.position(tp) for tp in assigned}
            return list(self._ids)
        finally:
            consumer.close()

    def _keep(self, topic: str, value: bytes) -> None:
        try:
            self._ids.append(str(json.loads(value)["event_id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("a record on %s without an event id", topic)


def kafka_event_ids(config: Settings, timeout_s: float = 30.0) -> list[str]:
    """Every event id on the topic, read afresh from the beginning."""
    return TopicReader(config, timeout_s).event_ids()
