"""The raw ASGI side of the gateway: which paths the proxy serves, and the dispatcher."""

from __future__ import annotations

from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable

from gateway.access_log import logged

PROXY_PATH_PREFIXES = ("/v1/", "/api/hello")
PROXY_EXACT_PATHS = frozenset({"/v1", "/metrics"})


def is_proxy_path(path: str) -> bool:
    return path in PROXY_EXACT_PATHS or path.startswith(PROXY_PATH_PREFIXES)


class GatewayDispatcher:
    """Sends proxy paths to the proxy app and everything else to Django."""

    def __init__(self, django_app: Any) -> None:
        from gateway.proxy.app import ProxyApp

        self.django_app = django_app
        self.proxy_app = ProxyApp()

    async def __call__(
        self, scope: dict, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" and is_proxy_path(scope["path"]):
            await self.proxy_app(scope, receive, send)  # the proxy logs its own requests
        else:
            await logged(self.django_app, scope, receive, send)
