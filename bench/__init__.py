"""Gatehouse benchmarks: what the gateway adds on top of its upstream, measured side by side.

Run:
    make bench                  # all scenarios, a few minutes
    BENCH_LONG=1 make bench     # plus the 100,000-request "no growth" run
    make bench BENCH_ARGS="ns_c1 st_c32"   # only some scenarios
    make profile                # py-spy flame graphs of the gateway under load → var/profile/

What `make bench` does (bench/stack.py):
  1. a temp var dir with a throwaway SQLite database (GATEHOUSE_VAR_DIR, DATABASE_URL,
     DEBUG=0, no Redis, GATEHOUSE_CACHE_TTL left at its 5 s default so steady state does no
     database query per request); `migrate`, then `apply_config` (a cost center, a user, a
     provider pointing at the emulator with one upstream key, a `claude-*` route, a price)
     and `issue_key`;
  2. the upstream emulator (under Granian) pinned to the first core and Gatehouse
     (`python -m gateway.serve`, as the Procfile runs it) pinned to the second, with `taskset -c`;
  3. every scenario (bench/scenarios.py) runs in short rounds, alternating direct → gateway →
     direct → gateway …, so drift on the machine hits both sides alike. The load generator
     runs in this process and moves (sched_setaffinity) to the core the measured path leaves
     idle: the gateway's core for direct rounds, the emulator's core for gateway rounds;
  4. it prints the machine, a table of absolute numbers with the added latency / throughput
     ratio and the targets, CPU per party and per core, and which core limited each run;
     the raw numbers go to var/bench/results-<time>.json.

The load generator (bench/loadgen.py) is a minimal HTTP/1.1 keep-alive client on asyncio
protocols, written for measurement only: ~20–40 µs of CPU per request, timestamps for the
first byte and the first/last `content_block_delta` of a stream. Its own CPU use is
measured (/proc/self/stat) and printed for every round.

Knobs (environment): BENCH_LONG=1; BENCH_KEEP=1 keeps the temp dir (server logs);
BENCH_GATEWAY_ASGI=module:attr and BENCH_PYTHONPATH run a variant of the gateway (used to
compare upstream clients); BENCH_DAPHNE_ARGS adds Daphne options; BENCH_NICE=-10 runs the
servers and the load generator at a higher priority on a machine shared with other work;
BENCH_COMMIT labels a run of an exported tree that has no .git; BENCH_SERVER=granian,
BENCH_POSTGRES=URL and BENCH_REDIS=URL change what is measured (docs/benchmarks.md, "Running").
"""
