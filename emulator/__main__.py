"""The emulator's command line.

python -m emulator serve [--template PATH] [--parameter-overrides K=V ...]
python -m emulator invoke FUNCTION EVENT_FILE [--template PATH] [--parameter-overrides K=V ...]
python -m emulator bridge --invoke-endpoint URL [--function-name LOGICAL=REMOTE ...] [...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from consim.config import settings

from emulator import logs
from emulator.template import DEFAULT_TEMPLATE, native_overrides, parse_overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    common.add_argument("--parameter-overrides", nargs="*", default=[], metavar="K=V")
    common.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", parents=[common], help="gateway, workers, Kafka, schedules")

    invoke = commands.add_parser("invoke", parents=[common], help="run one event, print result")
    invoke.add_argument("function", help="logical id or FunctionName")
    invoke.add_argument("event_file", type=Path, help="a JSON event ('-' reads stdin)")

    bridge = commands.add_parser("bridge", parents=[common], help="Kafka -> a Lambda Invoke API")
    bridge.add_argument("--invoke-endpoint", required=True, help="e.g. http://localhost:4566")
    bridge.add_argument("--function-name", nargs="*", default=[], metavar="LOGICAL=REMOTE")
    return parser


async def _invoke_once(function: str, event: object, template: Path, overrides: dict) -> int:
    from emulator.runtime import Runtime
    from emulator.template import load_template

    s = settings()
    runtime = Runtime(load_template(template, {**native_overrides(s), **overrides}), s)
    try:
        result = await runtime.invoke(function, event)
    finally:
        await runtime.close()
    print(json.dumps(result.payload, indent=2))
    print(
        json.dumps(
            {
                "request_id": result.request_id,
                "ok": result.ok,
                "duration_ms": round(result.duration_ms, 1),
                "cold_start": result.cold_start,
                "init_ms": result.init_ms and round(result.init_ms, 1),
            }
        ),
        file=sys.stderr,
    )
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level)
    overrides = parse_overrides(args.parameter_overrides)

    if args.command == "serve":
        from emulator.server import PortInUse, serve

        try:
            asyncio.run(serve(settings(), args.template, overrides))
        except PortInUse as exc:
            print(f"emulator: {exc}", file=sys.stderr)
            return 2
        return 0

    if args.command == "invoke":
        source = sys.stdin if str(args.event_file) == "-" else args.event_file.open()
        with source:
            event = json.load(source)
        from emulator.runtime import FunctionNotFound

        try:
            return asyncio.run(_invoke_once(args.function, event, args.template, overrides))
        except FunctionNotFound as exc:
            print(f"emulator: no function {exc} in {args.template}", file=sys.stderr)
            return 2

    from emulator.bridge import run_bridge

    names = parse_overrides(args.function_name)
    run_bridge(settings(), args.template, overrides, args.invoke_endpoint, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
