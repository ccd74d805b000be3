"""What tracing costs the API: latency with the X-Ray SDK on, and with POWERTOOLS_TRACE_DISABLED.

    CONSIM_PORT_OFFSET=... .venv/bin/python benchmarks/tracing_cost.py [--requests 200]

It needs the native stack up (Postgres, Kafka, DynamoDB, moto; the emulator's X-Ray daemon
receives the segments). It starts three extra API gateways of its own, in this process, on free
ports, each running only the ApiFunction of template.yaml: one as the template has it
("traced"), one with CONSIM_TRACE_SQL_STATEMENTS=false ("sql-steps": no subsegment per SQL
statement, only the event store's named steps) and one with POWERTOOLS_TRACE_DISABLED=true
("untraced"). The Lambda service's own function segment is emitted for all three, as in AWS
with active tracing: the differences are the function's own tracing only.

Requests go one at a time (closed loop: this measures the cost per request, not throughput),
taking turns between the gateways in rounds so that the machine's load falls on all alike.
Measured: POST /payments (idempotency record in DynamoDB, the append in Postgres, the Kafka
publish) and GET /accounts/{id} (one read).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path

from aiohttp import ClientSession, web
from consim.config import REPO_ROOT, settings

from emulator.apikeys import DynamoDbApiKeys
from emulator.gateway import build_app
from emulator.runtime import Runtime
from emulator.template import Template, load_template, native_overrides
from emulator.tracing import SegmentEmitter
from infra.clients import api_key as stored_api_key
from infra.layout import Layout

API_FUNCTION = "ApiFunction"
# The environment each variant adds to the ApiFunction's.
VARIANTS = {
    "traced": {},
    "sql-steps": {"CONSIM_TRACE_SQL_STATEMENTS": "false"},
    "untraced": {"POWERTOOLS_TRACE_DISABLED": "true"},
}


async def start_gateway(
    extra_env: dict[str, str], daemon: str | None = None
) -> tuple[web.AppRunner, Runtime, str]:
    config = settings()
    if daemon is not None:
        config = dataclasses.replace(config, xray_daemon_address=daemon)
    template = load_template(
        REPO_ROOT / "template.yaml", native_overrides(config), config.aws_region
    )
    spec = template.functions[API_FUNCTION]
    spec = dataclasses.replace(spec, environment={**spec.environment, **extra_env})
    only_api = Template(template.path, template.parameters, {API_FUNCTION: spec})
    runtime = Runtime(only_api, config, emitter=SegmentEmitter(config.xray_daemon_address))
    runner = web.AppRunner(build_app(runtime, DynamoDbApiKeys(config), config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, runtime, f"http://{host}:{port}"


async def timed(session: ClientSession, method: str, url: str, **kwargs) -> tuple[float, dict]:
    started = time.perf_counter()
    async with session.request(method, url, **kwargs) as response:
        body = await response.json(content_type=None)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {body}")
    return elapsed, body


async def open_account(session: ClientSession, base: str) -> str:
    _, body = await timed(
        session, "POST", f"{base}/accounts", json={"currency": "EUR", "limit": 10**11}
    )
    return body["id"]


async def one_round(session: ClientSession, base: str, account: str, count: int) -> dict:
    samples: dict[str, list[float]] = {"POST /payments": [], "GET /accounts/{id}": []}
    for _ in range(count):
        ms, _ = await timed(
            session,
            "POST",
            f"{base}/payments",
            json={"account_id": account, "amount": 1, "currency": "EUR", "description": "bench"},
            headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
        )
        samples["POST /payments"].append(ms)
        ms, _ = await timed(session, "GET", f"{base}/accounts/{account}")
        samples["GET /accounts/{id}"].append(ms)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


def blackhole() -> tuple[socket.socket, str]:
    """A UDP port that nobody reads: segments sent there cost the sender only."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = sink.getsockname()
    return sink, f"{host}:{port}"


async def run(
    requests: int, rounds: int, warmup: int, progress=sys.stderr, daemon: str | None = None
) -> dict:
    config = settings()
    key = os.environ.get("API_KEY") or stored_api_key(Layout(config.state_dir))
    if not key:
        raise SystemExit("no API key: start the stack (make up) or set API_KEY")
    gateways = {name: await start_gateway(env, daemon) for name, env in VARIANTS.items()}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    try:
        async with ClientSession(headers={"x-api-key": key}) as session:
            accounts = {}
            for name, (_, _, base) in gateways.items():
                accounts[name] = await open_account(session, base)
                await one_round(session, base, accounts[name], warmup)  # cold starts, pools
            per_round = max(1, requests // rounds)
            for index in range(rounds):
                names = list(VARIANTS)
                shift = index % len(names)
                order = names[shift:] + names[:shift]
                for name in order:
                    base = gateways[name][2]
                    got = await one_round(session, base, accounts[name], per_round)
                    for endpoint, values in got.items():
                        samples[name].setdefault(endpoint, []).extend(values)
                print(f"round {index + 1}/{rounds} done", file=progress, flush=True)
    finally:
        for runner, runtime, _ in gateways.values():
            await runner.cleanup()
            await runtime.close()
    return {
        name: {endpoint: summary(values) for endpoint, values in per.items()}
        for name, per in samples.items()
    }


def render(result: dict) -> str:
    lines = [
        f"{'endpoint':<20} {'variant':<10} {'n':>5} {'mean':>8} {'p50':>8} {'p90':>8} {'p99':>8}"
    ]
    for endpoint in result["traced"]:
        for name in VARIANTS:
            s = result[name][endpoint]
            lines.append(
                f"{endpoint:<20} {name:<10} {s['n']:>5} {s['mean']:>8.1f} {s['p50']:>8.1f} "
                f"{s['p90']:>8.1f} {s['p99']:>8.1f}"
            )
        off = result["untraced"][endpoint]
        for name in VARIANTS:
            if name == "untraced":
                continue
            on = result[name][endpoint]
            lines.append(
                f"{'':<20} {'+' + name:<10}{'':>5} {on['mean'] - off['mean']:>+8.1f} "
                f"{on['p50'] - off['p50']:>+8.1f} {on['p90'] - off['p90']:>+8.1f} "
                f"{on['p99'] - off['p99']:>+8.1f}   ms vs untraced "
                f"(p50 {100 * (on['p50'] - off['p50']) / off['p50']:+.0f} %)"
            )
    return "\n".join(lines)


def quiet_functions():
    """Send the function workers' output (they inherit our stdout and stderr) to a log file;
    return a stream on the original stdout for the report."""
    log_path = settings().state_dir / "bench" / "tracing_cost-functions.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    report = os.fdopen(os.dup(1), "w")
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    print(f"function output: {log_path}", file=report, flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per variant and endpoint")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--blackhole",
        action="store_true",
        help="send segments to a UDP port nobody reads instead of the stack's daemon: the "
        "function's own cost, without the daemon and moto working on the same CPUs",
    )
    args = parser.parse_args(argv)

    report = quiet_functions()
    sink, address = blackhole() if args.blackhole else (None, None)
    result = asyncio.run(run(args.requests, args.rounds, args.warmup, report, address))
    if sink is not None:
        sink.close()
    print(render(result), file=report, flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
