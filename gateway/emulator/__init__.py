"""An Anthropic-compatible upstream emulator for tests, demos and benchmarks.

A raw ASGI application (`app.EmulatorApp`) served by Daphne (`server.serve`, or
`manage.py emulate_upstream`). It answers the Messages API deterministically from the
request, simulates a per-key prompt cache and rate limits, injects faults on demand and
records every request it receives so tests can check what a gateway forwarded. The
control API lives under `/_emulator/` (see `control.py`).
"""
