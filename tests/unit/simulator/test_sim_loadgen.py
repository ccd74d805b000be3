"""The open-model property: no answer, however slow, holds back a later send.

A fake payments server holds every request until the test lets go; the schedule must still be
sent in full while nothing has been answered, latency must count from the intended instant, and
sends the generator could not make on time must be counted as late or dropped.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from simulator.api_client import PaymentsApi
from simulator.loadgen import Answer, OpenModelRunner
from simulator.schedule import Send

pytestmark = pytest.mark.unit


def sends(count: int, spacing: float) -> list[Send]:
    return [
        Send(
            seq=i,
            at=i * spacing,
            payment_index=i,
            account_id="acc",
            amount=100,
            currency="EUR",
            idempotency_key=f"k{i}",
            kind="original",
        )
        for i in range(count)
    ]


class HeldServer:
    """Answers nothing until released; counts what it has received meanwhile."""

    def __init__(self) -> None:
        self.received = 0
        self.release = asyncio.Event()
        self.received_before_release: int | None = None

    async def pay(self, request: web.Request) -> web.Response:
        self.received += 1
        await self.release.wait()
        body = await request.json()
        return web.json_response(
            {"id": f"pay-{request.headers['Idempotency-Key']}", **body}, status=201
        )

    async def serve(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/payments", self.pay)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def test_a_held_server_does_not_slow_the_send_schedule() -> None:
    async def scenario() -> tuple[HeldServer, OpenModelRunner, float]:
        server = HeldServer()
        runner_http, url = await server.serve()
        try:
            async with PaymentsApi(url, "key", max_connections=100) as api:
                load = OpenModelRunner(sends(30, 0.01), api.post_payment, progress=None)
                task = asyncio.create_task(load.run())
                # Every request must reach the server although none has been answered.
                while server.received < 30 and not task.done():
                    await asyncio.sleep(0.01)
                server.received_before_release = server.received
                released_at = load.now()
                server.release.set()
                await task
                return server, load, released_at
        finally:
            await runner_http.cleanup()

    server, load, released_at = asyncio.run(scenario())

    assert server.received_before_release == 30
    assert load.counters.answered == 30
    assert load.counters.dropped == 0
    assert all(o.status == 201 for o in load.outcomes)
    # Latency runs from the intended instant, so it includes all the time spent held.
    for outcome in load.outcomes:
        assert outcome.latency_ms >= (released_at - outcome.intended) * 1000
    assert load.histogram.get_total_count() == 30


def test_sends_the_generator_makes_behind_schedule_are_counted_late() -> None:
    blocked_once = []

    async def post(send: Send) -> Answer:
        if not blocked_once:
            blocked_once.append(send.seq)
            time.sleep(0.3)  # hogs the event loop, as a CPU-bound client would
        return Answer(201, {"id": f"p{send.seq}"})

    load = OpenModelRunner(sends(20, 0.01), post, late_threshold_ms=50, progress=None)
    outcomes = asyncio.run(load.run())

    late = [o for o in outcomes if o.lateness_ms is not None and o.lateness_ms > 50]
    assert late, "the sends due while the loop was blocked must start late"
    assert load.counters.late == len(late)
    assert all(o.latency_ms >= o.lateness_ms for o in late)


def test_sends_over_the_in_flight_cap_are_dropped_not_delayed() -> None:
    release = asyncio.Event()

    async def post(send: Send) -> Answer:
        await release.wait()
        return Answer(201, {"id": f"p{send.seq}"})

    async def scenario() -> OpenModelRunner:
        load = OpenModelRunner(sends(10, 0.005), post, max_in_flight=3, progress=None)
        task = asyncio.create_task(load.run())
        while len(load.outcomes) < 10:
            await asyncio.sleep(0.01)
        release.set()
        await task
        return load

    load = asyncio.run(scenario())

    assert load.counters.dropped == 7
    assert [o.dropped for o in load.outcomes] == [False] * 3 + [True] * 7
    assert load.counters.answered == 3


def test_errors_and_refusals_are_classified() -> None:
    answers = {
        0: Answer(201, {"id": "p0"}),
        1: Answer(422, {"type": "https://consim/problems/insufficient-funds"}),
        2: Answer(409, {"type": "https://consim/problems/request-in-flight"}),
        3: Answer(500, {"type": "about:blank"}),
    }

    async def post(send: Send) -> Answer:
        if send.seq == 4:
            raise ConnectionResetError("peer went away")
        return answers[send.seq]

    load = OpenModelRunner(sends(5, 0.0), post, progress=None)
    outcomes = asyncio.run(load.run())

    assert [o.category for o in outcomes] == [
        "accepted",
        "insufficient-funds",
        "in-flight",
        "error",
        "error",
    ]
    assert load.counters.errors == 2
    assert outcomes[4].error.startswith("ConnectionResetError")
