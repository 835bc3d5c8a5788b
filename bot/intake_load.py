"""How busy the webhook is, so that work done after the answer gives way to new deliveries.

The inbox handles stored deliveries on the same event loop as the webhook. Work that needs
GitHub (lookups, reactions, task creation) waits while a request is being answered, and while
deliveries arrive as a burst (`burst_size` within `burst_window`); at a steady trickle it runs
in the gaps between requests. A delivery never waits longer than its `patience`, so a flood
that outlasts it still gets handled, only more slowly.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Quiet means no request in flight and none for this long. 0: background work starts as soon
# as no answer is pending. (Measured at 200 deliveries/s, one every 5 ms: waiting 2 ms moved
# each delivery's handling into the next request's path and raised the median answer from
# 1.5 to 2.4 ms.)
QUIET_AFTER = 0.0
# A burst: this many deliveries within the window (400/s or more). At 200/s (10 per window)
# handling keeps pace in the gaps; in a burst it waits until the burst has passed.
BURST_SIZE = 20
BURST_WINDOW = 0.05


@dataclass
class IntakeLoad:
    """Requests in flight, the latest arrivals and when the last answer went; `quiet()` waits
    for a gap."""

    quiet_after: float = QUIET_AFTER
    burst_size: int = BURST_SIZE
    burst_window: float = BURST_WINDOW
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    last: float = float("-inf")
    _arrivals: deque[float] = field(default_factory=deque)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()
        self._arrivals = deque(maxlen=max(1, self.burst_size))

    def enter(self) -> None:
        """A webhook request began (plain calls: this runs on every delivery)."""
        self.in_flight += 1
        self._arrivals.append(self.clock())
        self._idle.clear()

    def leave(self) -> None:
        """A webhook request was answered."""
        self.in_flight -= 1
        self.last = self.clock()
        if self.in_flight == 0:
            self._idle.set()

    def wait_left(self) -> float:
        """With no request in flight: how long until the webhook counts as quiet (0: now)."""
        now = self.clock()
        left = self.last + self.quiet_after - now
        if len(self._arrivals) == self._arrivals.maxlen:
            # The oldest of the latest `burst_size` arrivals leaves the window then.
            left = max(left, self._arrivals[0] + self.burst_window - now)
        return max(0.0, left)

    async def quiet(self, patience: float) -> None:
        """Return once the webhook is quiet, or after `patience` seconds at the latest."""
        deadline = self.clock() + patience
        while True:
            budget = deadline - self.clock()
            if self.in_flight:
                if budget <= 0:
                    return
                try:
                    await asyncio.wait_for(self._idle.wait(), budget)
                except TimeoutError:
                    return
                continue
            left = self.wait_left()
            if left <= 0 or budget <= 0:
                return
            await asyncio.sleep(min(left, budget))
