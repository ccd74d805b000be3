"""The open-model load generator: fires every planned send at its intended time.

The dispatcher sleeps until each send's intended instant and starts it as its own task; it never
waits for an answer. Latency is taken from the intended instant, so time a request spent queued
behind a slow system (or behind our own event loop) is counted, not hidden. A send that starts
more than ``late_threshold_ms`` after its intended instant is late; one that could not start at
all (too late, or too many requests already in flight) is dropped and reported.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from simulator.latency import new_histogram, record_ms
from simulator.schedule import Send


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


Post = Callable[[Send], Awaitable[Answer]]


@dataclass
class Outcome:
    seq: int
    payment_index: int
    kind: str
    idempotency_key: str
    account_id: str
    amount: int
    intended: float  # seconds after the run's start
    sent: float | None = None
    done: float | None = None
    status: int | None = None
    payment_id: str | None = None
    problem: str | None = None
    error: str | None = None
    dropped: bool = False

    @property
    def latency_ms(self) -> float | None:
        if self.done is None:
            return None
        return (self.done - self.intended) * 1000

    @property
    def lateness_ms(self) -> float | None:
        return None if self.sent is None else (self.sent - self.intended) * 1000

    @property
    def category(self) -> str:
        """accepted | insufficient-funds | in-flight | error | dropped."""
        if self.dropped:
            return "dropped"
        if self.status in (200, 201) and self.payment_id:
            return "accepted"
        if self.status == 422 and (self.problem or "").endswith("insufficient-funds"):
            return "insufficient-funds"
        if self.status == 409:
            return "in-flight"
        return "error"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counters:
    sent: int = 0
    answered: int = 0
    late: int = 0
    dropped: int = 0
    errors: int = 0
    in_flight: int = 0
    by_category: dict[str, int] = field(default_factory=dict)


class OpenModelRunner:
    """Runs a fixed schedule against ``post``; see the module docstring for the rules."""

    def __init__(
        self,
        sends: tuple[Send, ...] | list[Send],
        post: Post,
        *,
        late_threshold_ms: float = 50,
        drop_after_s: float = 10,
        max_in_flight: int = 256,
        request_timeout_s: float = 15,
        progress: TextIO | None = sys.stderr,
        progress_every_s: float = 1.0,
    ) -> None:
        self._sends = sorted(sends, key=lambda s: s.at)
        self._post = post
        self._late_s = late_threshold_ms / 1000
        self._drop_after_s = drop_after_s
        self._max_in_flight = max_in_flight
        self._timeout_s = request_timeout_s
        self._progress = progress
        self._progress_every_s = progress_every_s
        self.counters = Counters()
        self.histogram = new_histogram()
        self._window: list[float] = []  # latencies of the last progress interval
        self.outcomes: list[Outcome] = []
        self.start: float | None = None  # the event loop's clock at offset 0
        self.wall_start = 0.0  # time.time() at offset 0, to place other threads' timestamps

    def now(self) -> float:
        """Seconds since the run's start on the loop's monotonic clock."""
        assert self.start is not None
        return asyncio.get_running_loop().time() - self.start

    async def run(self, start_delay_s: float = 0.05) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        self.start = loop.time() + start_delay_s
        self.wall_start = time.time() + start_delay_s
        tasks: list[asyncio.Task[None]] = []
        reporter = asyncio.create_task(self._report_progress())
        try:
            for send in self._sends:
                delay = send.at - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                outcome = self._outcome(send)
                self.outcomes.append(outcome)
                lateness = self.now() - send.at
                if lateness > self._drop_after_s or self.counters.in_flight >= self._max_in_flight:
                    outcome.dropped = True
                    self.counters.dropped += 1
                    continue
                self.counters.in_flight += 1
                tasks.append(asyncio.create_task(self._fire(send, outcome)))
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            reporter.cancel()
            self._print_progress(final=True)
        return self.outcomes

    @staticmethod
    def _outcome(send: Send) -> Outcome:
        return Outcome(
            seq=send.seq,
            payment_index=send.payment_index,
            kind=send.kind,
            idempotency_key=send.idempotency_key,
            account_id=send.account_id,
            amount=send.amount,
            intended=send.at,
        )

    async def _fire(self, send: Send, outcome: Outcome) -> None:
        outcome.sent = self.now()
        self.counters.sent += 1
        if outcome.sent - send.at > self._late_s:
            self.counters.late += 1
        try:
            answer = await asyncio.wait_for(self._post(send), self._timeout_s)
        except TimeoutError:
            outcome.error = f"no answer within {self._timeout_s}s"
        except Exception as exc:  # a transport failure is a result to count, not a crash
            outcome.error = f"{type(exc).__name__}: {exc}"
        else:
            outcome.status = answer.status
            body = answer.body if isinstance(answer.body, dict) else {}
            if answer.status in (200, 201):
                outcome.payment_id = body.get("id")
            else:
                outcome.problem = body.get("type")
        finally:
            outcome.done = self.now()
            self.counters.in_flight -= 1

        self.counters.answered += outcome.status is not None
        category = outcome.category
        self.counters.by_category[category] = self.counters.by_category.get(category, 0) + 1
        if category == "error":
            self.counters.errors += 1
        latency = outcome.latency_ms
        if latency is not None and outcome.status is not None:
            record_ms(self.histogram, latency)
            self._window.append(latency)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self._progress_every_s)
            self._print_progress()

    def _print_progress(self, *, final: bool = False) -> None:
        if self._progress is None:
            return
        # Cheap on purpose: this runs on the dispatcher's loop, and a full percentile pass over
        # the histogram's buckets takes tens of milliseconds, enough to make sends late.
        window = sorted(self._window)
        self._window = []
        window_p99 = window[min(len(window) - 1, int(len(window) * 0.99))] if window else 0.0
        overall_p99 = self.histogram.get_value_at_percentile(99.0) / 1000
        c = self.counters
        elapsed = self.now() if self.start is not None else 0.0
        label = "done" if final else f"{elapsed:6.1f}s"
        print(
            f"[{label}] sent {c.sent}/{len(self._sends)}  answered {c.answered}  "
            f"late {c.late}  dropped {c.dropped}  errors {c.errors}  in flight {c.in_flight}  "
            f"p99 {window_p99:.0f} ms (1 s)  {overall_p99:.0f} ms (all)",
            file=self._progress,
            flush=True,
        )
