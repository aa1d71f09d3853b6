"""ASGI entry: /v1 and /api/hello go to the raw proxy app; everything else to Django.

The proxy is a plain ASGI application so the hot path never pays for Django's request
machinery (DESIGN.md §1); admin, the API and pages stay ordinary Django.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()

from gateway.asgi import GatewayDispatcher  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": GatewayDispatcher(django_application),
    }
)
