"""The projector's read models equal the fold of the event store, whatever the record order."""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import uuid

import pytest
from consim.adapters.envelope import partition_key, to_envelope
from consim.adapters.event_store import StreamWrite
from consim.adapters.read_models import ReadModels, account_item, payment_item
from consim.config import REPO_ROOT
from consim.domain.account import Account, account_stream
from consim.domain.payment import Payment, payment_stream
from consim.services import accounts, bootstrap, payments
from consim.services.projection import rebuild
from support.api import LambdaContext, api_module
from support.postgres import migrated_url, unpublished_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def projector():
    migrated_url()
    api_module()  # sets the test environment (credentials, tracing off)
    path = REPO_ROOT / "functions" / "projector" / "handler.py"
    spec = importlib.util.spec_from_file_location("consim_projector_handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kafka_event(events) -> dict:
    """A Kafka event source event, in Lambda's shape, carrying `events` in the given order."""
    records = [
        {
            "topic": "payment-events",
            "partition": 0,
            "offset": i,
            "timestamp": 0,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(partition_key(e).encode()).decode(),
            "value": base64.b64encode(json.dumps(to_envelope(e)).encode()).decode(),
            "headers": [{"X-Amzn-Trace-Id": list(b"Root=1-00000000-000000000000000000000000")}],
        }
        for i, e in enumerate(events)
    ]
    return {"eventSource": "SelfManagedKafka", "records": {"payment-events-0": records}}


def make_history(store, client: str) -> tuple[str, list[str]]:
    account_id = f"proj-{uuid.uuid4().hex[:8]}"
    accounts.open_account(store, client, "EUR", 100, 10, account_id)
    ids = []
    for i in range(4):
        command = payments.RequestPayment(
            client, f"{account_id}-{i}", account_id, 5 + i, "EUR", None
        )
        ids.append(payments.request_payment(store, command, payments.LOCK).payment.id)
    # Settle two of them, as the processor would: the payment's outcome and the account's capture
    # or release in one append.
    for payment_id, authorized in zip(ids[:2], [True, False], strict=True):
        account = Account.fold(
            account_id, [e.event for e in store.read_stream(account_stream(account_id))]
        )
        payment = Payment.fold(
            payment_id, [e.event for e in store.read_stream(payment_stream(payment_id))]
        )
        if authorized:
            outcome = payment.authorize("default", "ref-1", 1)
            funds = account.capture(payment_id)
        else:
            outcome = payment.decline("default", "no")
            funds = account.release(payment_id, "declined")
        store.append_streams(
            [
                StreamWrite(payment_stream(payment_id), payment.version, outcome),
                StreamWrite(account_stream(account_id), account.version, funds),
            ]
        )
    return account_id, ids


def folded(store, account_id: str, payment_ids: list[str]) -> tuple[dict, list[dict]]:
    a_events = store.read_stream(account_stream(account_id))
    account = account_item(Account.fold(account_id, [e.event for e in a_events]))
    pays = []
    for payment_id in payment_ids:
        p_events = store.read_stream(payment_stream(payment_id))
        pays.append(payment_item(Payment.fold(payment_id, [e.event for e in p_events])))
    return account, pays


def stored(models: ReadModels, account_id: str, payment_ids: list[str]) -> tuple[dict, list[dict]]:
    drop = ("updated_at", "created_at")
    account = {k: v for k, v in (models.account(account_id) or {}).items() if k not in drop}
    pays = [
        {k: v for k, v in (models.payment(p) or {}).items() if k not in drop} for p in payment_ids
    ]
    return account, pays


def without_none(item: dict) -> dict:
    return {
        k: v for k, v in item.items() if v is not None and k not in ("updated_at", "created_at")
    }


def test_shuffled_and_duplicated_records_give_the_fold(projector) -> None:
    store = unpublished_store(bootstrap.event_store().pool)
    account_id, payment_ids = make_history(store, "client-proj")
    events = store.read_stream(account_stream(account_id)) + [
        e for p in payment_ids for e in store.read_stream(payment_stream(p))
    ]
    shuffled = events + events[:5]
    random.Random(11).shuffle(shuffled)

    # Half the records first (a late partial view), then all of them again: redelivery.
    projector.handler(kafka_event(shuffled[: len(shuffled) // 2]), LambdaContext())
    projector.handler(kafka_event(shuffled), LambdaContext())
    result = projector.handler(kafka_event(shuffled), LambdaContext())
    assert result["applied"] == 0

    want_account, want_payments = folded(store, account_id, payment_ids)
    got_account, got_payments = stored(ReadModels(), account_id, payment_ids)
    assert got_account == without_none(want_account)
    assert got_payments == [without_none(p) for p in want_payments]
    assert [p["status"] for p in got_payments] == ["authorized", "declined", "pending", "pending"]
    assert (got_account["captured"], got_account["reserved"]) == (5, 7 + 8)


def test_rebuild_restores_deleted_read_models(projector) -> None:
    store = unpublished_store(bootstrap.event_store().pool)
    account_id, payment_ids = make_history(store, "client-rebuild")
    models = ReadModels()
    written = rebuild(store, models)
    assert written["accounts"] >= 1
    assert written["payments"] >= 4

    want_account, want_payments = folded(store, account_id, payment_ids)
    got_account, got_payments = stored(models, account_id, payment_ids)
    assert got_account == without_none(want_account)
    assert got_payments == [without_none(p) for p in want_payments]
