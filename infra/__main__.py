"""`python -m infra <command>`: run the native local stack (see `python -m infra help`)."""

from __future__ import annotations

import os
import sys

from consim.config import settings

from infra import console, stack, testrun
from infra.environment import shell_assignments, stack_env
from infra.errors import StackError
from infra.layout import Layout

USAGE = """\
usage: python -m infra <command>

  up                 install what is missing, start the stack and the emulator, print endpoints
  down               stop everything `up` started (the data stays)
  status             each service: running or not, pid, port, endpoint
  logs               follow the stack's logs
  env                the endpoints as shell assignments: eval "$(python -m infra env)"
  test [pytest args] the test suite against a throwaway stack (port offset 10000 by default)

Every port and path comes from the environment (consim/config.py); CONSIM_PORT_OFFSET moves them.
"""


def _up() -> int:
    config = settings()
    seconds = stack.up(config)
    print(stack.format_status(stack.status(config)), end="")
    print(f"\nstarted in {seconds:.1f}s; logs in {Layout(config.state_dir).logs_dir}")
    print('environment for your shell: eval "$(make -s env)"')
    return 0


def _down() -> int:
    stopped = stack.down(settings())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status() -> int:
    print(stack.format_status(stack.status(settings())), end="")
    return 0


def _logs() -> int:
    logs = sorted(Layout(settings().state_dir).logs_dir.glob("*.log"))
    if not logs:
        console.fail("no logs yet: run `make up` first")
        return 1
    os.execvp("tail", ["tail", "-n", "20", "-F", *map(str, logs)])


def _env() -> int:
    config = settings()
    sys.stdout.write(shell_assignments(stack_env(config, Layout(config.state_dir))))
    return 0


COMMANDS = {"up": _up, "down": _down, "status": _status, "logs": _logs, "env": _env}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("help", "-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    try:
        if command == "test":
            return testrun.run(rest)
        if command not in COMMANDS or rest:
            console.fail(f"unknown command or arguments: {' '.join(args)}\n{USAGE}")
            return 2
        return COMMANDS[command]()
    except StackError as error:
        console.fail(str(error))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
