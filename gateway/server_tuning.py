"""Tuning of the servers the gateway runs under: Daphne's, applied when the ASGI module
loads; logging's, applied by `gateway.serve` under either server; and the garbage
collector's and the GIL's, applied by the process that serves once the application has loaded.

Twisted parses the Content-Type of every POST with the `email` package, to decide whether to
parse a form body into `request.args` — which Daphne never passes on (Django parses forms
itself from the raw body). That was about 8 % of the proxy's CPU in `make profile`. Daphne builds each request through the
`WebRequest` name in its protocol module, so a subclass installed there turns the parse off.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
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


# How long a thread waiting for the GIL lets the holder keep it before asking for it (the
# interpreter's default is 5 ms).
GIL_SWITCH_INTERVAL_S = 0.0001
# The CPU priority of the serving process's background threads, below its event loop's.
BACKGROUND_NICENESS = 19


def short_gil_switch_interval() -> None:
    """Let the event loop take the GIL back from a background thread within 0.1 ms, not 5.

    The request log's writer thread prices and inserts a batch holding the GIL. When a request
    arrives meanwhile, the event loop waits for the GIL for up to the switch interval, each
    time it wants it back. With the default 5 ms, the slow-stream TTFT p99 of `make bench` was
    +4.9 to +10.5 ms over direct; with 0.1 ms and the writer at a low CPU priority
    (`run_in_background`), +2.8 to +5.4 ms, ten runs in eleven within +5 ms (docs/benchmarks.md).
    The interval only matters while two threads want the GIL at once: the loop alone never
    switches.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def run_in_background() -> None:
    """Lower the calling thread's CPU priority (Linux: niceness is per thread), so that when
    the event loop wakes, the kernel runs it before this thread. Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
    except OSError:  # not allowed here (a seccomp profile): the thread keeps the default
        logging.getLogger(__name__).debug("could not lower a background thread's priority")


def tune_the_serving_process() -> None:
    """Everything the process that serves applies once the application has loaded, under
    either server (gateway.serve for Daphne, each Granian worker's lifespan startup)."""
    freeze_startup_heap()
    short_gil_switch_interval()
