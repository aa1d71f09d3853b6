"""A Google Vertex AI emulator (Claude via rawPredict / streamRawPredict) for tests and demos.

A raw ASGI application (`app.VertexEmulatorApp`) served by Daphne
(`python -m gateway.emulator_vertex.server --port N`). It runs the OAuth2 token endpoint
service accounts use (verifying their RS256 JWT assertions), checks the bearer tokens it
issued, answers rawPredict / streamRawPredict / count-tokens with the Anthropic emulator's
replies and usage, returns Google- or Anthropic-shaped errors on demand and records every
request. Control API under `/_emulator/`; pytest fixtures in `pytest_plugin`.
"""
