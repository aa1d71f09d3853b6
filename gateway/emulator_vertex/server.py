"""Serve the Vertex emulator with Daphne: `python -m gateway.emulator_vertex.server --port N`."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.emulator_vertex.app import VertexEmulatorApp

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8092
REQUEST_BUFFER_BYTES = 4 * 1024 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Google Vertex AI emulator")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    options = parser.parse_args(argv)

    def announce() -> None:
        sys.stdout.write(f"Vertex emulator listening on http://{options.host}:{options.port}\n")
        sys.stdout.flush()

    # Daphne installs Twisted's asyncio reactor at import time, so import it only here.
    from daphne.server import Server

    server = Server(
        application=VertexEmulatorApp(),
        endpoints=[f"tcp:port={options.port}:interface={options.host}"],
        signal_handlers=True,
        request_buffer_size=REQUEST_BUFFER_BYTES,
        verbosity=0,
        ready_callable=announce,
        server_name="gatehouse-vertex-emulator",
    )
    server.run()
    if not server.listening_addresses:
        logger.error("The Vertex emulator could not listen on %s:%s", options.host, options.port)
        sys.exit(1)


if __name__ == "__main__":
    main()
