"""`consim`: fire concurrent payments at the system, check what must hold, report what a user got.

consim run SCENARIO [--rate R] [--duration S] [--accounts N] [--seed N] [--set path=value]
consim scenarios
consim check [RUN] [--offline]
consim report [RUN]
consim trace PAYMENT_ID        (the trace viewer)
consim metrics                 (EMF metrics summary)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from consim.config import settings

from simulator import runs, scenario, summary
from simulator.api_client import ApiError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    overrides: list[tuple[str, Any]] = []
    named = {
        "rate": "arrival.rate",
        "duration": "duration",
        "accounts": "accounts.count",
        "seed": "seed",
        "drain_timeout": "drain_timeout_s",
    }
    for attr, path in named.items():
        if getattr(args, attr, None) is not None:
            overrides.append((path, getattr(args, attr)))
    overrides += [scenario.parse_override(text) for text in args.set or []]
    return overrides


def _first_sentence(text: str, width: int = 72) -> str:
    sentence = " ".join(text.split()).split(". ")[0]
    return sentence if len(sentence) <= width else sentence[: width - 3] + "..."


def cmd_scenarios(args: argparse.Namespace) -> int:
    rows = [["scenario", "rate/s", "duration", "accounts", "description"]]
    for name in scenario.shipped_names():
        s = scenario.load(name)
        rate = f"{s.arrival.rate:g}"
        if s.arrival.profile != "steady":
            rate += f"-{s.arrival.max_rate():g}"
        rows.append(
            [
                name,
                rate,
                f"{s.duration:g}s",
                str(s.accounts.count),
                _first_sentence(s.description),
            ]
        )
    print(summary.table(rows))
    return EXIT_OK


async def _run(chosen: scenario.Scenario, quiet: bool) -> dict[str, Any]:
    from simulator.api_client import PaymentsApi, api_key
    from simulator.notifications import Receivers
    from simulator.run import execute
    from simulator.system import StackInspector
    from simulator.timeline import Chaos

    config = settings()
    out = None if quiet else sys.stderr
    run_dir = runs.new_run_dir(chosen.name)
    async with PaymentsApi(config.api_url, api_key(), max_connections=chosen.max_in_flight) as api:
        loop = asyncio.get_running_loop()

        def kill(function: str) -> None:
            answer = asyncio.run_coroutine_threadsafe(api.kill_workers(function), loop).result(30)
            if answer.status >= 300:
                raise RuntimeError(f"kill {function}: HTTP {answer.status} {answer.body}")

        health = await api.health()
        if health.status != 200:
            print(
                f"consim: the API is not healthy at {config.api_url}: {health.status} "
                f"{health.body}",
                file=sys.stderr,
            )
        inspector = StackInspector(config, Chaos(config, kill))
        receivers = Receivers(webhook=chosen.webhook, webpush=chosen.webpush)
        record = await execute(
            chosen,
            api=api,
            inspector=inspector,
            receivers=receivers,
            run_dir=run_dir,
            api_url=config.api_url,
            out=out,
        )
    record["run_dir"] = str(run_dir)
    return record


def cmd_run(args: argparse.Namespace) -> int:
    chosen = scenario.load(args.scenario, _overrides(args))
    record = asyncio.run(_run(chosen, args.quiet))
    print(summary.render(record))
    print(f"report: {record['run_dir']}/{runs.REPORT_FILE}")
    if args.trace:
        _show_one_trace(record)
    return EXIT_OK if record["ok"] else EXIT_FAILED


def _show_one_trace(record: dict[str, Any]) -> None:
    """The waterfall of one payment that reached a final status (else of any accepted one)."""
    finals = [
        n["payment_id"]
        for n in record["notifications"]
        if n.get("status") in ("authorized", "declined", "failed") and n.get("payment_id")
    ]
    accepted = [o["payment_id"] for o in record["outcomes"] if o.get("payment_id")]
    chosen = (finals or accepted or [None])[0]
    if chosen is None:
        print("no payment to trace")
        return
    try:
        from simulator import tracing
    except ImportError:
        return
    print(f"\ntrace of payment {chosen} (consim trace {chosen}):")
    args = argparse.Namespace(
        payment_id=chosen, trace_id=None, xray_endpoint=None, width=120, wait=5.0
    )
    tracing.trace_command(args)


def cmd_check(args: argparse.Namespace) -> int:
    from simulator.invariants import Evidence, check_all

    run_dir = runs.find(args.run)
    record = runs.read_json(run_dir / runs.RUN_FILE)
    if args.offline:
        evidence = Evidence.from_dict(runs.read_json(run_dir / runs.EVIDENCE_FILE))
    else:
        evidence = asyncio.run(_fresh_evidence(record))
    evidence.subscriptions = record["subscriptions"]
    evidence.notifications = record["notifications"]
    checks = [c.as_dict() for c in check_all(evidence)]
    print(f"run {record['run_id']} ({record['scenario']}) in {run_dir}")
    print(summary.checks_table(checks))
    return EXIT_OK if all(c["ok"] for c in checks) else EXIT_FAILED


async def _fresh_evidence(record: dict[str, Any]):
    from simulator.api_client import PaymentsApi, api_key
    from simulator.run import gather_evidence
    from simulator.system import StackInspector
    from simulator.timeline import Chaos

    config = settings()
    account_ids = [a["account_id"] for a in record["accounts"]]
    async with PaymentsApi(config.api_url, api_key()) as api:
        inspector = StackInspector(config, Chaos(config, lambda _: None))
        return await gather_evidence(inspector, api, account_ids, record["outcomes"])


def cmd_report(args: argparse.Namespace) -> int:
    from simulator.run import save

    run_dir = runs.find(args.run)
    record = runs.read_json(run_dir / runs.RUN_FILE)
    save(run_dir, record)
    print(summary.render(record))
    print(f"report: {run_dir}/{runs.REPORT_FILE}")
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    from simulator import tracing

    return tracing.trace_command(args)


def cmd_metrics(args: argparse.Namespace) -> int:
    from simulator import metrics

    return metrics.metrics_command(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="consim",
        description="Fire concurrent payments at the payments system under a scenario, check the "
        "invariants, and report the latency users got.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a scenario (a shipped name or a YAML file)",
        description="Run a scenario; exit 0 only if every invariant and SLO "
        "held. Any scenario value can be overridden with --set path=value.",
    )
    run.add_argument("scenario", help="a shipped scenario (see `consim scenarios`) or a file")
    run.add_argument("--rate", type=float, help="arrival rate, payments per second")
    run.add_argument("--duration", type=float, help="seconds of load")
    run.add_argument("--accounts", type=int, help="number of accounts")
    run.add_argument("--seed", type=int, help="seed of the schedule")
    run.add_argument("--drain-timeout", type=float, help="seconds to wait for final statuses")
    run.add_argument(
        "--set",
        action="append",
        metavar="PATH=VALUE",
        help="override any scenario value, e.g. --set hot.share=0.5",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    run.add_argument(
        "--trace", action="store_true", help="end by printing the trace waterfall of one payment"
    )
    run.set_defaults(func=cmd_run)

    scen = sub.add_parser("scenarios", help="list the shipped scenarios")
    scen.set_defaults(func=cmd_scenarios)

    check = sub.add_parser("check", help="check the invariants of a run again (default: last)")
    check.add_argument("run", nargs="?", help="run folder or name (default: the newest)")
    check.add_argument(
        "--offline",
        action="store_true",
        help="use the evidence saved with the run instead of reading the system",
    )
    check.set_defaults(func=cmd_check)

    report = sub.add_parser("report", help="render a run's report again (default: last)")
    report.add_argument("run", nargs="?", help="run folder or name (default: the newest)")
    report.set_defaults(func=cmd_report)

    try:
        from simulator import tracing

        trace = sub.add_parser("trace", help="show a payment's trace as a waterfall")
        tracing.add_trace_arguments(trace)
        trace.set_defaults(func=cmd_trace)
    except ImportError:
        pass
    try:
        from simulator import metrics

        met = sub.add_parser("metrics", help="summarise the functions' EMF metrics")
        metrics.add_metrics_arguments(met)
        met.set_defaults(func=cmd_metrics)
    except (ImportError, AttributeError):
        pass
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (scenario.ScenarioError, runs.RunNotFound) as exc:
        print(f"consim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"consim: the system did not let the run go on: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
