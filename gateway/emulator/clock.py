"""An injectable clock, so cache TTLs and rate-limit windows can be tested without sleeping."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock seconds plus an offset the control API can advance."""

    def __init__(self) -> None:
        self.offset_seconds = 0.0

    def now(self) -> float:
        return time.time() + self.offset_seconds

    def advance(self, seconds: float) -> None:
        self.offset_seconds += seconds

    def reset(self) -> None:
        self.offset_seconds = 0.0
