"""How the stack's CLI talks to people: progress on stderr, so stdout stays clean for `env`."""

from __future__ import annotations

import sys
import time


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] WARNING: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
