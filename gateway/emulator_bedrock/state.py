"""Everything the Bedrock emulator remembers between requests, reset at once."""

from __future__ import annotations

import itertools
import secrets

from gateway.emulator.cache import PromptCache
from gateway.emulator.clock import Clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.recorder import RequestLog
from gateway.emulator_bedrock.faults import FaultQueue
from gateway.emulator_bedrock.sigv4 import AwsCredential

DEFAULT_REGION = "us-east-1"
TEST_ACCESS_KEY_ID = "AKIAGATEHOUSEEMULATOR"
TEST_SECRET_ACCESS_KEY = "gatehouse/emulator/Secret+Access+Key/0001"


class BedrockState:
    def __init__(self) -> None:
        self.clock = Clock()
        self.config = EmulatorConfig()
        self.cache = PromptCache()
        self.faults = FaultQueue()
        self.log = RequestLog(self.config.record_limit)
        self.region = DEFAULT_REGION
        self.credentials: dict[str, AwsCredential] = {}
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self.reset()

    def reset(self) -> None:
        self.clock.reset()
        self.config.reset()
        self.cache.clear()
        self.faults.clear()
        self.log.clear()
        self.region = DEFAULT_REGION
        self.credentials = {TEST_ACCESS_KEY_ID: AwsCredential(TEST_SECRET_ACCESS_KEY)}

    def next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):016x}"
