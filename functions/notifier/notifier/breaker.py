"""Subscribers that keep failing are given a rest, so that a dead one costs little.

Without it every notification for a dead subscriber spends its full retry sequence, batch after
batch, and each batch of its partition waits for that. After `threshold` failed deliveries in a
row (timeouts, refused connections, 5xx: not a 4xx, which answers at once), the subscriber's
circuit opens: its notifications go straight to the dead-letter topic for `cooldown_seconds`.
Then one delivery is tried again (half-open): success closes the circuit, failure reopens it.

The state lives in the execution environment, so each notifier instance learns on its own; a
new instance pays the retries once before its circuit opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    open_until: float | None = None


class SubscriberBreaker:
    def __init__(
        self,
        threshold: int = 3,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def resting(self, subscription_id: str) -> bool:
        """True while the subscriber's circuit is open: do not send now."""
        with self._lock:
            state = self._states.get(subscription_id)
            if state is None or state.open_until is None:
                return False
            if self._clock() < state.open_until:
                return True
            # Half-open: this caller makes the one trial; the others keep resting meanwhile.
            state.open_until = self._clock() + self._cooldown
            return False

    def succeeded(self, subscription_id: str) -> None:
        with self._lock:
            self._states.pop(subscription_id, None)

    def failed(self, subscription_id: str) -> None:
        with self._lock:
            state = self._states.setdefault(subscription_id, _State())
            state.failures += 1
            if state.failures >= self._threshold:
                state.open_until = self._clock() + self._cooldown
