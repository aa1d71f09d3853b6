"""An Amazon Bedrock runtime emulator (InvokeModel for Claude) for tests and demos.

A raw ASGI application (`app.BedrockEmulatorApp`) served by Daphne
(`python -m gateway.emulator_bedrock.server --port N`). It verifies SigV4 signatures with
botocore, answers invoke / invoke-with-response-stream (real AWS event-stream frames) /
count-tokens with the Anthropic emulator's replies and usage, injects AWS faults and records
every request. Control API under `/_emulator/`; pytest fixtures in `pytest_plugin`.
"""
