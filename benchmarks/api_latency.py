"""Sequential API latency through the gateway: p50/p99 of POST /payments and GET /payments/{id}.

eval "$(make -s env)"; .venv/bin/python benchmarks/api_latency.py --requests 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import requests
from consim.config import settings


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)

    base = os.environ.get("API_URL") or settings().api_url
    session = requests.Session()
    session.headers["x-api-key"] = os.environ["API_KEY"]
    opened = session.post(f"{base}/accounts", json={"currency": "EUR", "limit": 10**9}, timeout=30)
    opened.raise_for_status()
    account_id = opened.json()["id"]

    timings: dict[str, list[float]] = {"POST /payments": [], "GET /payments/{id}": []}
    failures = 0
    for _ in range(args.requests):
        began = time.perf_counter()
        created = session.post(
            f"{base}/payments",
            json={"account_id": account_id, "amount": 1, "currency": "EUR"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        timings["POST /payments"].append((time.perf_counter() - began) * 1000)
        if created.status_code != 201:
            failures += 1
            continue
        began = time.perf_counter()
        read = session.get(f"{base}/payments/{created.json()['id']}", timeout=30)
        timings["GET /payments/{id}"].append((time.perf_counter() - began) * 1000)
        failures += read.status_code != 200

    print(f"{'route':<20} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for route, values in timings.items():
        if values:
            print(
                f"{route:<20} {len(values):>5} {percentile(values, 50):>8.1f} "
                f"{percentile(values, 99):>8.1f} {max(values):>8.1f}"
            )
    print(f"failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
