"""An OpenAI-compatible upstream emulator (`POST /v1/chat/completions`) for tests.

A raw ASGI application (`app.OpenAIEmulatorApp`) served by Daphne (`server.serve`, or
`python -m gateway.emulator_openai.server --port N`). It validates requests the way OpenAI
does (roles, tool-call ordering, tool names, `stop` length, unknown parameters), answers
deterministically from the request — text, tool calls streamed in fragments, optional
`reasoning_content` — reports `cached_tokens` when a request repeats a prefix, injects
faults on demand and records every request. The control API lives under `/_emulator/`.
"""
