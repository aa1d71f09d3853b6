"""`manage.py emulate_upstream --port N`: run the Anthropic-compatible upstream emulator."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gateway.emulator.server import DEFAULT_HOST, DEFAULT_PORT


class Command(BaseCommand):
    help = "Run the Anthropic-compatible upstream emulator (tests, demos, benchmarks)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=DEFAULT_PORT)
        parser.add_argument("--host", default=DEFAULT_HOST)
        parser.add_argument(
            "--text-deltas", type=int, default=None, help="text_delta events per reply"
        )
        parser.add_argument(
            "--delta-delay-ms", type=float, default=None, help="pause between deltas"
        )
        parser.add_argument("--reply-text", default=None, help="fixed reply text")

    def handle(self, *args: Any, **options: Any) -> None:
        from gateway.emulator.app import EmulatorApp
        from gateway.emulator.server import serve

        app = EmulatorApp()
        settings = {
            "text_deltas": options["text_deltas"],
            "delta_delay_ms": options["delta_delay_ms"],
            "reply_text": options["reply_text"],
        }
        app.state.config.update(
            {name: value for name, value in settings.items() if value is not None}
        )
        host, port = options["host"], options["port"]

        def announce() -> None:
            self.stdout.write(f"Upstream emulator listening on http://{host}:{port}")
            self.stdout.flush()

        serve(host=host, port=port, app=app, verbosity=options["verbosity"] - 1, on_ready=announce)
