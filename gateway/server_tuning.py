"""Tuning of the servers the gateway runs under: Daphne's, applied when the ASGI module
loads, and logging's, applied by `gateway.serve` under either server.

Twisted parses the Content-Type of every POST with the `email` package, to decide whether to
parse a form body into `request.args` — which Daphne never passes on (Django parses forms
itself from the raw body). That was about 8 % of the proxy's CPU in `make profile`. Daphne builds each request through the
`WebRequest` name in its protocol module, so a subclass installed there turns the parse off.
"""

from __future__ import annotations

import logging
from typing import Any


def skip_twisted_form_parsing() -> None:
    try:
        from daphne import http_protocol
    except ImportError:  # served by another ASGI server
        return
    original = http_protocol.WebRequest
    if getattr(original, "gatehouse_tuned", False):
        return

    class WebRequest(original):  # type: ignore[misc, valid-type]
        gatehouse_tuned = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    http_protocol.WebRequest = WebRequest  # type: ignore[misc]


# What the three switches below blank out in a LogRecord; no format the servers use prints it.
FIELDS_LEFT_OUT = (
    "pathname",
    "filename",
    "module",
    "funcName",
    "lineno",
    "thread",
    "threadName",
    "process",
    "processName",
)


def lean_log_records() -> None:
    """Skip the caller, thread and process look-ups every LogRecord makes (the logging HOWTO's
    "Optimization" switches): about 4 µs of each line, and Granian logs a line per request.
    tests/gateway/test_serve_options.py checks that no format in use prints FIELDS_LEFT_OUT."""
    logging._srcfile = None  # type: ignore[attr-defined]  # documented in the logging HOWTO
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
