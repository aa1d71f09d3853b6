"""Everything the emulator remembers between requests, in one place that resets at once."""

from __future__ import annotations

import itertools
import secrets

from gateway.emulator.cache import PromptCache
from gateway.emulator.clock import Clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.faults import FaultQueue
from gateway.emulator.ratelimits import RateLimiter
from gateway.emulator.recorder import RequestLog


class EmulatorState:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.config = EmulatorConfig()
        self.cache = PromptCache()
        self.rate_limiter = RateLimiter()
        self.faults = FaultQueue()
        self.log = RequestLog(self.config.record_limit)
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def reset(self) -> None:
        self.clock.reset()
        self.config.reset()
        self.cache.clear()
        self.rate_limiter.clear()
        self.faults.clear()
        self.log.clear()
        self.log.resize(self.config.record_limit)

    def next_id(self) -> str:
        """Unique per process: a random prefix chosen at start plus a counter, in hex."""
        return f"{self._id_prefix}{next(self._ids):016x}"
