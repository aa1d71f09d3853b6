"""`python -m gateway.serve` options: which server, how many workers, Granian's bounds."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import subprocess
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import access_log, serve, serve_granian
from gateway.server_tuning import FIELDS_LEFT_OUT, GIL_SWITCH_INTERVAL_S, freeze_startup_heap


class RecordedServer:
    """Stands in for granian's Server: records how it was configured, serves nothing."""

    calls: list[dict[str, Any]] = []

    def __init__(self, target: str, **options: Any) -> None:
        self.calls.append({"target": target, **options})

    def serve(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch) -> list[dict[str, Any]]:
    import granian.server

    RecordedServer.calls = []
    monkeypatch.setattr(granian.server, "Server", RecordedServer)
    return RecordedServer.calls


def test_granian_serves_as_many_requests_at_once_as_the_open_files_limit_allows(recorded):
    serve.main(["--server", "granian", "-p", "8123", "--workers", "3", "-v", "0"])

    [options] = recorded
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # Granian's default (its backlog, 1024) would leave the 1,025th stream waiting unanswered.
    assert options["backpressure"] >= max(open_files // 2, 1024) > 1024
    assert options["target"] == "gateway.serve_granian:application"
    assert (options["port"], options["workers"], options["log_access"]) == (8123, 3, False)
    assert options["workers_kill_timeout"] > 30  # beyond the default 30 s grace


@pytest.mark.parametrize(("verbosity", "workers_log"), [("1", "1"), ("0", "0")])
def test_under_granian_the_workers_write_gatehouses_access_log_not_granians(
    recorded, monkeypatch, verbosity, workers_log
):
    monkeypatch.delenv(serve_granian.ACCESS_LOG_ENV, raising=False)

    serve.main(["--server", "granian", "-p", "8125", "-v", verbosity])

    [options] = recorded
    assert options["log_access"] is False  # Granian's own, through `logging`, is never on
    assert os.environ[serve_granian.ACCESS_LOG_ENV] == workers_log


def test_gateway_server_env_selects_granian(recorded, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_SERVER", "granian")

    serve.main(["-p", "8124"])

    assert [options["port"] for options in recorded] == [8124]


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "2"],  # Daphne runs one process
        ["--server", "granian", "--workers", "0"],
        ["--server", "granian", "--proxy-headers"],
        ["--server", "hypercorn"],
    ],
)
def test_impossible_server_options_are_refused_before_anything_starts(recorded, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        serve.main(argv)

    assert exited.value.code == 2
    assert recorded == []
    assert "error:" in capsys.readouterr().err


@pytest.fixture
def signal_handlers_restored() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def run_granian_lifespan() -> list[tuple[str, int]]:
    """Drive the Granian application through startup and shutdown, as Granian's worker does;
    each message it sends, with how many objects were frozen when it was sent."""
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[tuple[str, int]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], gc.get_freeze_count()))

    asyncio.run(
        serve_granian.GranianLifespan(application=None)({"type": "lifespan"}, receive, send)
    )
    return sent


def test_the_granian_application_answers_lifespan_and_chains_the_servers_signal_handler(
    signal_handlers_restored,
):
    granian_handler_calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: granian_handler_calls.append(number))

    sent = run_granian_lifespan()
    os.kill(os.getpid(), signal.SIGTERM)  # after the loop closed: Granian's handler still runs

    assert [message_type for message_type, _ in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert granian_handler_calls == [signal.SIGTERM]


@pytest.mark.parametrize(("setting", "logs"), [("1", True), ("0", False)])
def test_a_granian_worker_keeps_its_access_log_from_startup_and_writes_the_rest_at_shutdown(
    signal_handlers_restored, unfrozen_afterwards, monkeypatch, setting, logs
):
    read_end, write_end = os.pipe()
    monkeypatch.setenv(serve_granian.ACCESS_LOG_ENV, setting)
    seen: list[access_log.AccessLog | None] = []
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        if len(messages) == 1:  # started: one request's line, held for the flush interval
            seen.append(access_log.installed())
            access_log.record({"path": "/v1/messages", "raw_path": b"/v1/messages"}, 200, 0.0)
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    lifespan = serve_granian.GranianLifespan(application=None, access_log_fd=write_end)
    asyncio.run(lifespan({"type": "lifespan"}, receive, send))
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        written = reader.read()

    assert (seen[0] is not None) is logs
    assert ('"GET /v1/messages HTTP/1.1" 200' in written) is logs
    assert access_log.installed() is None


@pytest.fixture
def logging_switches() -> Iterator[None]:
    """`gateway.serve` sets process-wide logging switches: put them back for other tests."""
    saved = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    yield
    (
        logging._srcfile,
        logging.logThreads,
        logging.logProcesses,
        logging.logMultiprocessing,
    ) = saved


def test_serving_makes_log_records_without_caller_thread_or_process_lookups(
    recorded, logging_switches
):
    serve.main(["--server", "granian", "-p", "8123", "-v", "0"])
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("test-lean-records")
    logger.addHandler(handler)
    try:
        logger.warning("an access line")
    finally:
        logger.removeHandler(handler)

    assert (records[0].lineno, records[0].threadName, records[0].processName) == (0, None, None)


def test_no_log_format_in_use_prints_what_lean_records_leave_out():
    from django.conf import settings
    from granian.log import LOGGING_CONFIG

    formats = [
        formatter.get("format") or formatter.get("fmt") or ""
        for config in (settings.LOGGING, LOGGING_CONFIG)
        for formatter in config["formatters"].values()
    ]

    assert formats
    assert [
        (fmt, field) for fmt in formats for field in FIELDS_LEFT_OUT if f"%({field})" in fmt
    ] == []


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    """Serving freezes the heap of the process it runs in: thaw it for the tests after."""
    yield
    gc.unfreeze()


def test_freezing_the_startup_heap_collects_garbage_first_and_exempts_what_lives(
    unfrozen_afterwards,
):
    class Node:
        pass

    garbage = Node()
    garbage.cycle = garbage  # type: ignore[attr-defined]  # freed only by a collection
    garbage_ref = weakref.ref(garbage)
    del garbage
    alive = [Node()]

    freeze_startup_heap()

    assert garbage_ref() is None  # collected, not frozen for the life of the process
    assert gc.get_freeze_count() > 0
    assert not any(tracked is alive for tracked in gc.get_objects(generation=2))


def test_the_granian_worker_freezes_its_startup_heap_before_serving(
    signal_handlers_restored, unfrozen_afterwards
):
    sent = run_granian_lifespan()

    frozen_at_startup = dict(sent)["lifespan.startup.complete"]
    assert frozen_at_startup > 0


def serve_under_recorded_daphne(monkeypatch) -> dict[str, Any]:
    """Run `gateway.serve` with a Daphne that serves nothing; what the process looked like
    when the server was started."""
    at_run: dict[str, Any] = {}

    class RecordedDaphne:
        abort_start = False
        listening_addresses = ["127.0.0.1:8125"]

        def __init__(self, application: Any, **options: Any) -> None:
            pass

        def run(self) -> None:
            at_run["frozen"] = gc.get_freeze_count()
            at_run["switch_interval"] = sys.getswitchinterval()

    monkeypatch.setattr(serve, "GatehouseServer", RecordedDaphne)
    serve.main(["-p", "8125", "-v", "0"])
    return at_run


def test_daphne_serving_freezes_the_startup_heap_before_it_runs(
    monkeypatch, logging_switches, unfrozen_afterwards
):
    assert serve_under_recorded_daphne(monkeypatch)["frozen"] > 0


@pytest.fixture(autouse=True)
def switch_interval_restored() -> Iterator[None]:
    """Serving shortens the GIL switch interval of the process it runs in: put it back for
    the tests after (every test here that serves, whatever it checks)."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # the interpreter's default
    yield
    sys.setswitchinterval(saved)


def test_the_granian_worker_lets_its_event_loop_take_the_gil_back_within_a_tenth_of_a_ms(
    signal_handlers_restored, unfrozen_afterwards
):
    run_granian_lifespan()

    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)


def test_daphne_serving_lets_its_event_loop_take_the_gil_back_within_a_tenth_of_a_ms(
    monkeypatch, logging_switches, unfrozen_afterwards
):
    at_run = serve_under_recorded_daphne(monkeypatch)

    assert at_run["switch_interval"] == pytest.approx(GIL_SWITCH_INTERVAL_S)


def test_daphne_runs_twisted_on_uvloop_and_leaves_the_process_default_loop_alone():
    # A fresh interpreter: the reactor is installed once per process, at the first import.
    probe = (
        "import asyncio, gateway.serve\n"
        "from daphne import server\n"
        "from twisted.internet import reactor\n"
        "print(type(reactor._asyncioEventloop).__module__, reactor._asyncioEventloop is"
        " server.twisted_loop, type(asyncio.new_event_loop()).__module__)\n"
    )
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )

    assert completed.stdout.split() == ["uvloop", "True", "asyncio.unix_events"]
