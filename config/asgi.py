"""ASGI entry: /v1 and /api/hello go to the raw proxy app; WebSockets under /ws/ to Channels
consumers (signed-in staff only, same-origin only); everything else to Django.

The proxy is a plain ASGI application so the hot path never pays for Django's request
machinery (DESIGN.md §1); admin, the API and pages stay ordinary Django.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from gateway.asgi import GatewayDispatcher  # noqa: E402
from gateway.consumers import LiveFeedConsumer  # noqa: E402
from gateway.live_feed import SOCKET_PATH  # noqa: E402
from gateway.server_tuning import skip_twisted_form_parsing  # noqa: E402

skip_twisted_form_parsing()

application = ProtocolTypeRouter(
    {
        "http": GatewayDispatcher(django_application),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter([path(SOCKET_PATH.lstrip("/"), LiveFeedConsumer.as_asgi())])
            )
        ),
    }
)
