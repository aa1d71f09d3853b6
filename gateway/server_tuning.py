"""Tuning of the Daphne server the gateway runs under, applied when the ASGI module loads.

Twisted parses the Content-Type of every POST with the `email` package, to decide whether to
parse a form body into `request.args` — which Daphne never passes on (Django parses forms
itself from the raw body). That was about 8 % of the proxy's CPU in `make profile`. Daphne builds each request through the
`WebRequest` name in its protocol module, so a subclass installed there turns the parse off.
"""

from __future__ import annotations

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
