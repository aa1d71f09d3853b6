"""Serve the emulator with Daphne, programmatically (one process, one event loop)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from gateway.emulator.app import EmulatorApp

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8089
# Daphne hands the body to the app in chunks of this size; one chunk for any normal request.
REQUEST_BUFFER_BYTES = 4 * 1024 * 1024


def serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    app: EmulatorApp | None = None,
    verbosity: int = 0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Block serving `app` on host:port until SIGINT/SIGTERM."""
    # Daphne installs Twisted's asyncio reactor at import time, so import it only here.
    from daphne.server import Server

    server = Server(
        application=app or EmulatorApp(),
        endpoints=[f"tcp:port={port}:interface={host}"],
        signal_handlers=True,
        request_buffer_size=REQUEST_BUFFER_BYTES,
        verbosity=verbosity,
        ready_callable=on_ready,
        server_name="gatehouse-emulator",
    )
    server.run()
    if not server.listening_addresses:
        logger.error("The upstream emulator could not listen on %s:%s", host, port)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """`python -m gateway.emulator.server --port N`: the same server without Django startup."""
    import argparse

    parser = argparse.ArgumentParser(description="Anthropic-compatible upstream emulator")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    options = parser.parse_args(argv)

    def announce() -> None:
        sys.stdout.write(f"Upstream emulator listening on http://{options.host}:{options.port}\n")
        sys.stdout.flush()

    serve(host=options.host, port=options.port, on_ready=announce)


if __name__ == "__main__":
    main()
