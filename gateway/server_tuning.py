"""Tuning of the servers the gateway runs under: Daphne's, applied when the ASGI module
loads; logging's, applied by `gateway.serve` under either server; and the garbage
collector's, applied by the process that serves once the application has loaded.

Twisted parses the Content-Type of every POST with the `email` package, to decide whether to
parse a form body into `request.args` — which Daphne never passes on (Django parses forms
itself from the raw body). That was about 8 % of the proxy's CPU in `make profile`. Daphne builds each request through the
`WebRequest` name in its protocol module, so a subclass installed there turns the parse off.
"""

from __future__ import annotations

import gc
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


def freeze_startup_heap() -> None:
    """Exempt what is alive once the application has loaded from every later collection.

    A full (generation 2) collection walks every object the collector tracks: after startup,
    Django, the apps and their modules, hundreds of thousands of objects that live as long as
    the process. Walking them frees nothing and holds the GIL throughout: on the benchmark VM
    full collections took about 100 ms, up to 213 ms, while serving, a stall for every
    request in flight (docs/benchmarks.md). `gc.freeze()` moves them to the permanent
    generation; garbage made at startup is collected first, so nothing collectable is
    frozen. Objects made while serving are collected as before.
    """
    gc.collect()
    gc.freeze()
