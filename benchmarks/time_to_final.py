"""Time from POST /payments to the payment's final status, one payment at a time.

Each payment is posted, then GET /payments/{id} is read every --poll-ms until its status is
final (authorized, declined or failed). The figure includes the trip through Kafka to the
processor and the provider call; the poll interval bounds its resolution.

eval "$(make -s env)"; .venv/bin/python benchmarks/time_to_final.py --payments 100
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
import uuid

import requests
from consim.config import settings
from consim.domain.payment import FINAL_STATUSES


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=float, default=60.0, help="give up on one payment")
    args = parser.parse_args(argv)

    base = os.environ.get("API_URL") or settings().api_url
    session = requests.Session()
    session.headers["x-api-key"] = os.environ["API_KEY"]
    opened = session.post(f"{base}/accounts", json={"currency": "EUR", "limit": 10**9}, timeout=30)
    opened.raise_for_status()
    account_id = opened.json()["id"]

    to_final: list[float] = []
    statuses: collections.Counter[str] = collections.Counter()
    stuck = 0
    for n in range(1, args.payments + 1):
        began = time.perf_counter()
        created = session.post(
            f"{base}/payments",
            json={"account_id": account_id, "amount": 1, "currency": "EUR"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        if created.status_code != 201:
            statuses[f"HTTP {created.status_code}"] += 1
            continue
        url = f"{base}/payments/{created.json()['id']}"
        while True:
            status = session.get(url, timeout=30).json().get("status")
            elapsed = time.perf_counter() - began
            if status in FINAL_STATUSES:
                to_final.append(elapsed * 1000)
                statuses[status] += 1
                break
            if elapsed > args.timeout_s:
                stuck += 1
                break
            time.sleep(args.poll_ms / 1000)
        if n % 25 == 0:
            print(f"  {n}/{args.payments} posted", file=sys.stderr)

    if to_final:
        figures = [percentile(to_final, p) for p in (50, 90, 99)] + [max(to_final)]
        print(
            f"{'POST to final status':<22} {'n':>5} "
            + " ".join(f"{h:>8}" for h in ("p50 ms", "p90 ms", "p99 ms", "max ms"))
        )
        print(f"{'':<22} {len(to_final):>5} " + " ".join(f"{v:>8.1f}" for v in figures))
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"not final after {args.timeout_s:.0f} s: {stuck}")
    return 1 if stuck or not to_final else 0


if __name__ == "__main__":
    sys.exit(main())
