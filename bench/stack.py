"""The system under test: a throwaway database, the upstream emulator and Gatehouse, each
pinned to its own core, plus readers for what /proc says about them."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
MODEL = "claude-sonnet-4-5"
UPSTREAM_SECRET = "sk-ant-bench-upstream-0000000000000000"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

CONFIG_YAML = """\
cost_centers:
  - {{code: bench, name: Benchmark}}
users:
  - {{username: bench, email: bench@example.com, cost_center: bench}}
providers:
  - name: emulator
    kind: anthropic
    base_url: http://{host}:{port}
    keys:
      - {{label: main, secret_env: BENCH_UPSTREAM_KEY}}
routes:
  - name: default
    match: "claude-*"
    targets: [{{provider: emulator}}]
prices:
  - model: {model}
    effective_from: "2025-01-01T00:00:00Z"
    input: "3"
    output: "15"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE for this process and its children (the servers inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prioritise(pid: int) -> None:
    """With BENCH_NICE=-10, let the benchmark's processes win the cores from other work.

    Under the kernel's autogroup scheduling (the default) nice only ranks processes within
    one session, so the session's autogroup is re-niced as well.
    """
    niceness = os.environ.get("BENCH_NICE")
    if not niceness:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, int(niceness))
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as autogroup:
        autogroup.write(niceness)


# --- /proc readers ---------------------------------------------------------------------------


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_switches(pid: int) -> int:
    """Context switches (voluntary and not) over all of a process's threads since they began:
    unlike CPU time, a count the VM's speed does not move."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError), open(task / "status") as status:
            for line in status:
                if "ctxt_switches:" in line:  # voluntary_… and nonvoluntary_…
                    total += int(line.split()[1])
    return total


def status_kib(pid: int, name: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM …) in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE // 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (Linux ≥ 4.0, needs the right to write clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def core_times() -> dict[int, tuple[float, float]]:
    """Per core: (busy, total) seconds since boot, from /proc/stat."""
    times: dict[int, tuple[float, float]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                numbers = [int(value) for value in values[:8]]
                idle = numbers[3] + numbers[4]  # idle + iowait
                total = sum(numbers)
                times[int(name[3:])] = ((total - idle) / CLOCK_TICKS, total / CLOCK_TICKS)
    return times


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()  # noqa: S607
    memory = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as meminfo:
        memory = f"{int(meminfo.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": nproc or str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    core: int
    log_path: Path

    @property
    def pid(self) -> int:
        """The serving process: the server itself, or its only worker when it forks one
        (Granian's process manager forks a worker that does all the serving)."""
        children_path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            children = children_path.read_text().split()
        except OSError:
            children = []
        return int(children[0]) if len(children) == 1 else self.process.pid


@dataclass
class Stack:
    var_dir: Path
    env: dict[str, str]
    virtual_key: str = ""
    emulator: Server | None = None
    gateway: Server | None = None
    servers: list[Server] = field(default_factory=list)

    # the cores: the emulator on the first, Gatehouse on the second (DESIGN.md §1: "one core
    # for the proxy"); the load generator moves to whichever core the measured path leaves idle.
    database: str = "SQLite"
    redis: str = "no Redis"
    emulator_core: int = 0
    gateway_core: int = 1


def _base_env(var_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        # an outside Redis, database or config must not leak into the measurement
        if name not in {"REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL", "GATEHOUSE_CONFIG"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            # production settings: DEBUG off (no query log, no debug cursors), fresh secrets
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "GATEHOUSE_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": HOST,
            "GATEHOUSE_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'bench.sqlite3'}",
            "BENCH_UPSTREAM_KEY": UPSTREAM_SECRET,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        }
    )
    env.pop("GATEHOUSE_CACHE_TTL", None)  # the default (5 s): steady state never hits the DB
    return env


@contextlib.contextmanager
def throwaway_database(env: dict[str, str]) -> Iterator[str]:
    """SQLite in the var dir by default; with BENCH_POSTGRES (a server URL), a fresh database
    on that PostgreSQL server, dropped afterwards. Yields a description for the report."""
    server_url = os.environ.get("BENCH_POSTGRES")
    if not server_url:
        yield "SQLite"
        return
    import psycopg

    name = f"gatehouse_bench_{os.getpid()}"
    server = urlsplit(server_url)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    env["DATABASE_URL"] = urlunsplit(server._replace(path=f"/{name}"))
    try:
        yield f"PostgreSQL ({server.hostname}:{server.port or 5432}, not pinned)"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def shared_redis(env: dict[str, str]) -> Iterator[str]:
    """Without BENCH_REDIS, budgets, limits and pool state are counted in the gateway's process.
    With it (a Redis URL), they go through that Redis, as with several workers in production,
    under a key prefix of this run's own, whose keys are deleted afterwards. Celery stays on
    the var dir's spool, so nothing lands in that Redis's queues. Yields the report's words."""
    url = os.environ.get("BENCH_REDIS")
    if not url:
        yield "no Redis"
        return
    import redis

    prefix = f"gatehouse-bench-{os.getpid()}-{secrets.token_hex(4)}"
    server = urlsplit(url)
    with redis.Redis.from_url(url) as client:
        client.ping()  # an unreachable Redis stops the run here, not as gateway errors later
        env.update(
            {
                "REDIS_URL": url,
                "GATEHOUSE_REDIS_PREFIX": prefix,
                "CELERY_BROKER_URL": "filesystem://",
            }
        )
        try:
            yield f"Redis ({server.hostname}:{server.port or 6379}, not pinned)"
        finally:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])


def _manage(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [PYTHON, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


def wait_listening(server: Server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}; "
                f"log:\n{server.log_path.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not listen on {server.port} within {timeout_s} s")


def _start(
    stack: Stack, name: str, core: int, port: int, argv: list[str], env: dict[str, str]
) -> Server:
    log_path = stack.var_dir / f"{name}.log"
    taskset = shutil.which("taskset")
    pinned = [taskset, "-c", str(core), *argv] if taskset else argv
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv built above
            pinned,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name=name, process=process, port=port, core=core, log_path=log_path)
    stack.servers.append(server)
    if not taskset:
        os.sched_setaffinity(process.pid, {core})
    prioritise(process.pid)
    wait_listening(server)
    return server


def _server_choice(variable: str, default: str) -> str:
    server = os.environ.get(variable, default)
    if server not in {"daphne", "granian"}:
        raise SystemExit(f"{variable} must be daphne or granian, not {server!r}")
    return server


def gateway_server() -> str:
    """The server Gatehouse runs under: BENCH_SERVER, else Daphne (the default)."""
    return _server_choice("BENCH_SERVER", "daphne")


def emulator_server() -> str:
    """The server the upstream emulator runs under: BENCH_EMULATOR_SERVER, else Granian.

    The upstream stands in for Anthropic, which is never a gateway's bottleneck. Under Daphne
    the emulator saturates its core at about 2,500 req/s on the Intel Xeon VM, so the direct
    side measured the emulator, and through the gateway two slow servers took turns: neither
    core was busy and the gateway sat at 77 % of its core. Under Granian it serves about
    7,300 req/s and the gateway side measures the gateway (docs/benchmarks.md, "The emulator
    under Granian").
    """
    return _server_choice("BENCH_EMULATOR_SERVER", "granian")


def emulator_argv(port: int) -> list[str]:
    """The upstream emulator on `port`, under `emulator_server()`."""
    if emulator_server() == "daphne":
        return [PYTHON, "-m", "gateway.emulator.server", "--port", str(port)]
    return _granian_argv(
        port, "--no-ws", "--log-level", "warning", "--factory", "gateway.emulator.app:EmulatorApp"
    )


WAVE_ROOM = 4096  # connections a bench server must hold at once: the 2,000-stream wave, twice


def _granian_argv(port: int, *options: str) -> list[str]:
    """Granian's own command line: one worker on uvloop serving an ASGI application.

    Granian serves at most `--backpressure` requests at once (by default its backlog, 1024) and
    leaves the rest unanswered: the 2,000-stream wave needs room for all of them."""
    granian = str(Path(PYTHON).parent / "granian")
    return [
        granian,
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--host",
        HOST,
        "--port",
        str(port),
        "--backlog",
        str(WAVE_ROOM),
        "--backpressure",
        str(WAVE_ROOM),
        *options,
    ]


def gateway_description() -> str:
    """What serves the gateway side, for the report: the server, and the variant if any."""
    variant = os.environ.get("BENCH_GATEWAY_ASGI")
    return gateway_server().capitalize() + (f" serving {variant}" if variant else "")


def gateway_argv(
    port: int, *, server: str | None = None, application: str | None = None
) -> list[str]:
    """Gatehouse as the Procfile runs it (`gateway.serve`, under `server`, else BENCH_SERVER);
    with `application`, else BENCH_GATEWAY_ASGI, the same server serving a variant application
    (BENCH_DAPHNE_ARGS adds Daphne options)."""
    server = server or gateway_server()
    application = application or os.environ.get("BENCH_GATEWAY_ASGI")
    if server == "granian":
        if application is None:
            return [
                PYTHON,
                "-m",
                "gateway.serve",
                "--server",
                "granian",
                "-b",
                HOST,
                "-p",
                str(port),
            ]
        return _granian_argv(port, "--access-log", application)
    extra = os.environ.get("BENCH_DAPHNE_ARGS", "").split()
    if application is None:
        return [PYTHON, "-m", "gateway.serve", "-b", HOST, "-p", str(port), *extra]
    daphne = str(Path(PYTHON).parent / "daphne")
    return [daphne, "-b", HOST, "-p", str(port), *extra, application]


@contextlib.contextmanager
def running_stack(*, keep_var_dir: bool = False, with_gateway: bool = True) -> Iterator[Stack]:
    """A throwaway database with the bench's key and route, the emulator, and (unless
    `with_gateway` is off, for a caller that runs Gatehouse itself) the gateway server."""
    raise_open_files_limit()
    prioritise(os.getpid())
    cores = sorted(os.sched_getaffinity(0))
    var_dir = Path(tempfile.mkdtemp(prefix="gatehouse-bench-"))
    stack = Stack(var_dir=var_dir, env=_base_env(var_dir))
    stack_exit = contextlib.ExitStack()
    if len(cores) >= 2:
        stack.emulator_core, stack.gateway_core = cores[0], cores[1]
    else:
        stack.emulator_core = stack.gateway_core = cores[0]
    try:
        stack.database = stack_exit.enter_context(throwaway_database(stack.env))
        stack.redis = stack_exit.enter_context(shared_redis(stack.env))
        emulator_port, gateway_port = free_port(), free_port()
        print(
            f"bench: var dir {var_dir}; migrating a throwaway {stack.database} database …",
            flush=True,
        )
        _manage(stack.env, "migrate", "--noinput")
        config_path = var_dir / "bench.yaml"
        config_path.write_text(CONFIG_YAML.format(host=HOST, port=emulator_port, model=MODEL))
        _manage(stack.env, "apply_config", str(config_path), "--verbosity", "0")
        stack.virtual_key = _manage(stack.env, "issue_key", "bench").strip()
        emulator_env = dict(stack.env)
        stack.emulator = _start(
            stack,
            "emulator",
            stack.emulator_core,
            emulator_port,
            emulator_argv(emulator_port),
            emulator_env,
        )
        # where bench.floor (the bare pass-through to compare with) sends its requests
        stack.env["BENCH_FLOOR_UPSTREAM"] = f"http://{HOST}:{emulator_port}"
        if with_gateway:
            gateway_env = dict(stack.env)
            if os.environ.get("BENCH_PYTHONPATH"):
                gateway_env["PYTHONPATH"] = os.environ["BENCH_PYTHONPATH"]
            stack.gateway = _start(
                stack,
                "gateway",
                stack.gateway_core,
                gateway_port,
                gateway_argv(gateway_port),
                gateway_env,
            )
        yield stack
    finally:
        for server in reversed(stack.servers):
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in stack.servers:
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=5)
        stack_exit.close()
        if keep_var_dir or os.environ.get("BENCH_KEEP"):
            print(f"bench: kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
