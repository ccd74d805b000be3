"""Hot account: N concurrent payments on one account, optimistic retry vs a per-stream lock.

    CONSIM_PORT_OFFSET=22000 .venv/bin/python benchmarks/hot_account.py --concurrency 25 100

Each round opens a fresh account (a limit no burst can reach, so every payment is accepted and
what is measured is contention, not refusals), releases N threads at once through a barrier,
each making one payment through the service layer against the stack's Postgres. Latency is per
payment, from the barrier to its answer; throughput is payments over the round's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from consim.adapters.postgres_event_store import PostgresEventStore, open_pool
from consim.config import settings
from consim.services import accounts, payments

CLIENT = "bench"


@dataclass
class Figures:
    strategy: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    errors: int = 0
    wall: float = 0.0

    @property
    def payments(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def one_round(store: PostgresEventStore, strategy: str, n: int, figures: Figures) -> None:
    account_id = f"bench-{uuid.uuid4().hex[:10]}"
    accounts.open_account(store, CLIENT, "EUR", 10**9, 0, account_id)
    barrier = threading.Barrier(n + 1)
    lock = threading.Lock()

    def pay(i: int) -> None:
        command = payments.RequestPayment(CLIENT, f"{account_id}-{i}", account_id, 1, "EUR", None)
        barrier.wait()
        began = time.perf_counter()
        try:
            accepted = payments.request_payment(store, command, strategy)
        except Exception:
            with lock:
                figures.errors += 1
            return
        elapsed = time.perf_counter() - began
        with lock:
            figures.latencies.append(elapsed)
            figures.retries += accepted.attempts - 1

    threads = [threading.Thread(target=pay, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    figures.wall += time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[25, 100])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", nargs="+", default=list(payments.STRATEGIES))
    args = parser.parse_args(argv)

    pool = open_pool(settings().database_url, min_size=4, max_size=max(args.concurrency) + 2)
    pool.wait()
    store = PostgresEventStore(pool)  # no publisher: Kafka is not what is measured
    results = []
    for n in args.concurrency:
        # Alternate strategies round by round, so that drift in machine load hits both alike.
        by_strategy = {s: Figures(s, n) for s in args.strategies}
        for _ in range(args.rounds):
            for strategy in args.strategies:
                one_round(store, strategy, n, by_strategy[strategy])
        results.extend(by_strategy.values())
    pool.close()

    header = (
        f"{'strategy':<11} {'N':>4} {'payments':>8} {'tput/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'retries':>8} {'retry/pay':>9} {'errors':>6}"
    )
    print(header)
    for f in results:
        print(
            f"{f.strategy:<11} {f.concurrency:>4} {f.payments:>8} "
            f"{f.payments / f.wall if f.wall else 0:>8.0f} {f.percentile(50):>8.1f} "
            f"{f.percentile(99):>8.1f} {max(f.latencies) * 1000 if f.latencies else 0:>8.1f} "
            f"{f.retries:>8} {f.retries / max(f.payments, 1):>9.2f} {f.errors:>6}"
        )
    if any(f.latencies for f in results):
        print(
            f"(rounds: {args.rounds}; mean of all latencies "
            f"{statistics.mean(x for f in results for x in f.latencies) * 1000:.1f} ms)"
        )
    return 1 if any(f.errors for f in results) else 0


if __name__ == "__main__":
    sys.exit(main())
