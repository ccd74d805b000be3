"""The simulated provider against the stack's Postgres, through its Lambda handler."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
from support.provider import (
    ADMIN,
    DEFAULT,
    FALLBACK,
    PROVIDER_DIR,
    call,
    ledger,
    load_provider,
    migrated_url,
    provider_server,
    reset,
    set_knobs,
)

pytestmark = pytest.mark.integration

PAYMENTS = f"/providers/{DEFAULT}/payments"


@pytest.fixture(scope="module")
def provider():
    migrated_url()
    return load_provider(DEFAULT)


@pytest.fixture(scope="module")
def base_url(provider):
    with provider_server(workers=12) as url:
        yield url


def http_pay(base_url: str, payment_id: str, amount: int) -> tuple[int, dict]:
    """One payment over HTTP, for tests that need requests truly at the same time."""
    body = json.dumps({"payment_id": payment_id, "amount": amount, "currency": "EUR"}).encode()
    request = urllib.request.Request(
        f"{base_url}/{DEFAULT}/payments", body, {"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(autouse=True)
def clean(provider):
    reset(provider, DEFAULT)
    yield
    reset(provider, DEFAULT)


def pay(provider, amount=1000, payment_id=None, currency="EUR"):
    payment_id = payment_id or str(uuid.uuid4())
    body = {"payment_id": payment_id, "amount": amount, "currency": currency}
    return call(provider, "POST", PAYMENTS, body)


def test_authorizes_charges_the_fee_and_can_be_looked_up(provider):
    status, charge = pay(provider, amount=10_000, payment_id="p-auth")

    assert status == 201
    assert charge["status"] == "authorized"
    assert charge["fee"] == 150  # 1.5 % of 10000
    assert charge["provider"] == DEFAULT
    status, found = call(provider, "GET", f"{PAYMENTS}/p-auth")
    assert status == 200
    assert found["provider_ref"] == charge["provider_ref"]
    assert ledger(provider, DEFAULT) | {"in_flight": 0} == {
        "provider": DEFAULT,
        "count": 1,
        "amount": 10_000,
        "fees": 150,
        "declined": 0,
        "in_flight": 0,
    }


def test_unknown_payment_is_404(provider):
    status, body = call(provider, "GET", f"{PAYMENTS}/never-seen")
    assert (status, body["error"]) == (404, "not_found")


def test_invalid_request_is_422_and_records_nothing(provider):
    for body in (
        {"payment_id": "x", "amount": 0, "currency": "EUR"},
        {"payment_id": "x", "amount": "10", "currency": "EUR"},
        {"payment_id": "", "amount": 10, "currency": "EUR"},
        {"payment_id": "x", "amount": 10, "currency": "EURO"},
        "not json",
    ):
        status, _ = call(provider, "POST", PAYMENTS, body)
        assert status == 422, body
    assert ledger(provider, DEFAULT)["count"] == 0


def test_another_instance_name_is_not_served_here(provider):
    status, _ = call(
        provider,
        "POST",
        f"/providers/{FALLBACK}/payments",
        {"payment_id": "x", "amount": 1, "currency": "EUR"},
    )
    assert status == 404


def test_a_repeated_payment_id_gets_409_with_the_original_and_is_not_charged_again(provider):
    _, first = pay(provider, amount=500, payment_id="p-dup")
    status, body = pay(provider, amount=999, payment_id="p-dup")

    assert status == 409
    assert body["charge"]["provider_ref"] == first["provider_ref"]
    assert body["charge"]["amount"] == 500
    assert ledger(provider, DEFAULT)["count"] == 1


def test_concurrent_requests_with_one_payment_id_charge_once(provider, base_url):
    results = []
    barrier = threading.Barrier(12)

    def attempt():
        barrier.wait()
        results.append(http_pay(base_url, "p-race", 700))

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 11
    refs = {body.get("provider_ref") or body["charge"]["provider_ref"] for _, body in results}
    assert len(refs) == 1
    assert ledger(provider, DEFAULT)["count"] == 1


def test_declines_by_amount_suffix_and_remembers_the_decline(provider):
    set_knobs(provider, DEFAULT, decline_amount_suffix="13")

    status, body = pay(provider, amount=1013, payment_id="p-decl")
    assert (status, body["status"], body["fee"]) == (402, "declined", 0)
    status, again = pay(provider, amount=1013, payment_id="p-decl")
    assert (status, again["charge"]["status"]) == (409, "declined")
    assert pay(provider, amount=1014)[0] == 201
    summary = ledger(provider, DEFAULT)
    assert (summary["count"], summary["declined"], summary["amount"]) == (1, 1, 1014)


def test_failures_and_outage_record_nothing(provider):
    set_knobs(provider, DEFAULT, failure_rate=1.0)
    assert pay(provider, payment_id="p-fail")[0] == 500
    set_knobs(provider, DEFAULT, failure_rate=0.0, outage=True)
    assert pay(provider, payment_id="p-fail")[0] == 503
    assert call(provider, "GET", f"{PAYMENTS}/p-fail")[0] == 404
    set_knobs(provider, DEFAULT, outage=False)
    assert pay(provider, payment_id="p-fail")[0] == 201


def test_a_request_past_its_deadline_is_refused_unrecorded(provider):
    body = {"payment_id": "p-late", "amount": 100, "currency": "EUR"}
    past = str(int(time.time() * 1000) - 1)
    status, answer = call(provider, "POST", PAYMENTS, body, headers={"x-deadline-ms": past})
    assert (status, answer["error"]) == (504, "deadline_exceeded")
    assert call(provider, "GET", f"{PAYMENTS}/p-late")[0] == 404

    future = str(int(time.time() * 1000) + 60_000)
    assert call(provider, "POST", PAYMENTS, body, headers={"x-deadline-ms": future})[0] == 201


def test_a_timed_out_request_is_charged_before_it_answers(provider):
    set_knobs(provider, DEFAULT, timeout_rate=1.0, timeout_ms=50)
    status, _ = pay(provider, payment_id="p-slow")
    # In-process nobody gives up; over HTTP the client would have. Either way it is charged.
    assert status == 201
    assert call(provider, "GET", f"{PAYMENTS}/p-slow")[1]["status"] == "authorized"


def test_health_reports_failing_and_typical_latency(provider):
    set_knobs(provider, DEFAULT, latency_p50_ms=40, latency_p99_ms=90)
    assert call(provider, "GET", f"/providers/{DEFAULT}/health") == (
        200,
        {"failing": False, "min_response_time": 40},
    )
    set_knobs(provider, DEFAULT, outage=True)
    assert call(provider, "GET", f"/providers/{DEFAULT}/health")[1]["failing"] is True


def test_admin_endpoints_need_the_token(provider):
    for method, path in (
        ("GET", f"/providers/{DEFAULT}/admin/knobs"),
        ("PUT", f"/providers/{DEFAULT}/admin/knobs"),
        ("GET", f"/providers/{DEFAULT}/admin/ledger"),
        ("GET", f"/providers/{DEFAULT}/admin/charges"),
        ("POST", f"/providers/{DEFAULT}/admin/purge"),
    ):
        status, _ = call(provider, method, path, {}, headers={"x-admin-token": "wrong"})
        assert status == 401, path
        assert call(provider, method, path, {})[0] == 401, path


def test_knob_updates_are_checked(provider):
    for change in (
        {"failure_rate": 1.5},
        {"latency_p50_ms": 100, "latency_p99_ms": 10},
        {"max_concurrency": 0},
        {"no_such_knob": 1},
        {"outage": "yes"},
        {"latency_distribution": "pareto"},
    ):
        status, _ = call(
            provider, "PUT", f"/providers/{DEFAULT}/admin/knobs", change, headers=ADMIN
        )
        assert status == 422, change
    status, knobs = call(provider, "GET", f"/providers/{DEFAULT}/admin/knobs", headers=ADMIN)
    assert (status, knobs["failure_rate"], knobs["max_concurrency"]) == (200, 0.0, 20)


def test_charges_page_through_the_ledger(provider):
    for n in range(5):
        pay(provider, amount=100 + n, payment_id=f"p-page-{n}")
    status, first = call(
        provider, "GET", f"/providers/{DEFAULT}/admin/charges", headers=ADMIN, query={"limit": "3"}
    )
    assert status == 200
    ids = [c["payment_id"] for c in first["charges"]]
    _, rest = call(
        provider,
        "GET",
        f"/providers/{DEFAULT}/admin/charges",
        headers=ADMIN,
        query={"after": ids[-1]},
    )
    ids += [c["payment_id"] for c in rest["charges"]]
    assert ids == [f"p-page-{n}" for n in range(5)]


def _hold_slots(url: str, provider_class: int, slots: range) -> list[psycopg.Connection]:
    held = []
    for slot in slots:
        conn = psycopg.connect(url)
        taken = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (provider_class, slot))
        assert taken.fetchone()[0] is True
        held.append(conn)
    return held


def test_over_max_concurrency_answers_429_and_frees_the_slots_after(provider):
    set_knobs(provider, DEFAULT, max_concurrency=3)
    held = _hold_slots(migrated_url(), provider.ledger.slot_class(DEFAULT), range(3))
    try:
        assert ledger(provider, DEFAULT)["in_flight"] == 3
        assert pay(provider, payment_id="p-busy")[0] == 429
        assert call(provider, "GET", f"{PAYMENTS}/p-busy")[0] == 404
    finally:
        for conn in held:
            conn.rollback()  # ends the transaction, and with it the locks, before we look
            conn.close()
    assert ledger(provider, DEFAULT)["in_flight"] == 0
    assert pay(provider, payment_id="p-busy")[0] == 201


def test_threads_over_max_concurrency_never_exceed_it_and_leak_no_slot(provider, base_url):
    set_knobs(provider, DEFAULT, max_concurrency=3, latency_p50_ms=400, latency_p99_ms=400)
    results: list[int] = []
    barrier = threading.Barrier(10)

    def attempt(n: int) -> None:
        barrier.wait()
        results.append(http_pay(base_url, f"p-load-{n}", 100 + n)[0])

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(results) <= {201, 429}
    assert 1 <= results.count(201) <= 10
    assert 429 in results  # 10 requests holding 400 ms each against 3 slots
    summary = ledger(provider, DEFAULT)
    assert summary["count"] == results.count(201)
    assert summary["in_flight"] == 0


def test_a_worker_killed_mid_request_gives_its_slot_back(provider):
    set_knobs(provider, DEFAULT, max_concurrency=1, latency_p50_ms=60_000, latency_p99_ms=60_000)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROVIDER_DIR.parent.parent / "tests")!r})
        from support.provider import DEFAULT, call, load_provider
        call(load_provider(DEFAULT), "POST", f"/providers/{DEFAULT}/payments",
             {{"payment_id": "p-killed", "amount": 100, "currency": "EUR"}})
    """)
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        # Decided on arrival: once the charge is visible the worker sits in its latency sleep.
        deadline = time.monotonic() + 60
        while call(provider, "GET", f"{PAYMENTS}/p-killed")[0] != 200:
            assert worker.poll() is None, "the worker ended before charging"
            assert time.monotonic() < deadline, "the worker never charged"
            time.sleep(0.05)
        assert ledger(provider, DEFAULT)["in_flight"] == 1
        set_knobs(provider, DEFAULT, latency_p50_ms=0, latency_p99_ms=0)
        assert pay(provider, payment_id="p-meanwhile")[0] == 429
    finally:
        worker.kill()
        worker.wait()

    deadline = time.monotonic() + 30
    while ledger(provider, DEFAULT)["in_flight"] != 0:
        assert time.monotonic() < deadline, "the dead worker's slot was never released"
        time.sleep(0.05)
    assert pay(provider, payment_id="p-after")[0] == 201
    assert call(provider, "GET", f"{PAYMENTS}/p-killed")[1]["status"] == "authorized"
