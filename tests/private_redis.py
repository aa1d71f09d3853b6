"""A redis-server of a test's own, to stop, kill and start again (outage tests)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.live_servers import free_port


class PrivateRedis:
    """With `keeps_data`, Redis saves its data set on stop and loads it on start, as a Redis
    restarted by its operator does; without, it starts empty, as one whose host went away."""

    def __init__(self, directory: Path, *, keeps_data: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.keeps_data = keeps_data
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "3600 1" if self.keeps_data else "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        with self.client() as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis saves its data set (when it keeps data) and exits."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: Redis dies with everything it held, as when its host goes away."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def keys(self, prefix: str) -> set[str]:
        with self.client() as client:
            return {key.decode() for key in client.scan_iter(match=f"{prefix}:*")}
