"""Everything the Vertex emulator remembers between requests."""

from __future__ import annotations

import itertools
import secrets

from gateway.emulator.cache import PromptCache
from gateway.emulator.clock import Clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.faults import FaultQueue
from gateway.emulator.recorder import RequestLog
from gateway.emulator_vertex.oauth import IssuedToken, ServiceAccount

DEFAULT_TOKEN_LIFETIME_S = 3600


class VertexState:
    def __init__(self) -> None:
        self.clock = Clock()
        self.config = EmulatorConfig()
        self.cache = PromptCache()
        self.faults = FaultQueue()
        self.log = RequestLog(self.config.record_limit)
        self.accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.token_lifetime_s = DEFAULT_TOKEN_LIFETIME_S
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    def reset(self) -> None:
        """Back to defaults. Issued tokens stay valid until they expire, as Google's do: a
        gateway that cached one before a test's reset may keep using it."""
        self.clock.reset()
        self.config.reset()
        self.cache.clear()
        self.faults.clear()
        self.log.clear()
        self.accounts.clear()
        self.token_lifetime_s = DEFAULT_TOKEN_LIFETIME_S

    def next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"
