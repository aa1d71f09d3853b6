"""Serve the OpenAI emulator with Daphne: `python -m gateway.emulator_openai.server --port N`.

No Django start-up is needed; clients use `http://127.0.0.1:N/v1` as their base URL.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from gateway.emulator.server import REQUEST_BUFFER_BYTES
from gateway.emulator_openai.app import OpenAIEmulatorApp

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


def serve(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    app: OpenAIEmulatorApp | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Block serving `app` on host:port until SIGINT/SIGTERM."""
    # Daphne installs Twisted's asyncio reactor at import time, so import it only here.
    from daphne.server import Server

    server = Server(
        application=app or OpenAIEmulatorApp(),
        endpoints=[f"tcp:port={port}:interface={host}"],
        signal_handlers=True,
        request_buffer_size=REQUEST_BUFFER_BYTES,
        verbosity=0,
        ready_callable=on_ready,
        server_name="gatehouse-openai-emulator",
    )
    server.run()
    if not server.listening_addresses:
        logger.error("The OpenAI emulator could not listen on %s:%s", host, port)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible upstream emulator")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    options = parser.parse_args(argv)

    def announce() -> None:
        sys.stdout.write(f"OpenAI emulator listening on http://{options.host}:{options.port}/v1\n")
        sys.stdout.flush()

    serve(host=options.host, port=options.port, on_ready=announce)


if __name__ == "__main__":
    main()
