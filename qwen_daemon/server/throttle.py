"""Slows down token guessing: too many failed authentications from one peer get 429 for a while.

A correct token is never throttled (the check runs only after authentication has failed), so an
attacker hammering the port cannot lock the real user out. Memory is bounded: at most
``MAX_PEERS`` addresses are tracked, the least recently seen forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 20
WINDOW_SECONDS = 60.0
MAX_PEERS = 1024


class AuthThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self._now = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, peer: str) -> deque[float]:
        times = self._failures.setdefault(peer, deque(maxlen=self.max_failures))
        self._failures.move_to_end(peer)
        while len(self._failures) > MAX_PEERS:
            self._failures.popitem(last=False)
        cutoff = self._now() - self.window
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def fail(self, peer: str) -> float:
        """Record a failure; returns seconds to wait (0 when the peer may still try)."""
        times = self._recent(peer)
        if len(times) >= self.max_failures:
            return max(1.0, times[0] + self.window - self._now())
        times.append(self._now())
        return 0.0
