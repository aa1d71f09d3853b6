"""Sign-in throttling (django-axes): whose address a failed sign-in counts against, and the
page a locked-out person sees.

The policy itself lives in settings (`AXES_*`): after `GATEHOUSE_LOGIN_FAILURE_LIMIT` failed
sign-ins for one username (from one address, or from anywhere) further attempts are refused
for `GATEHOUSE_LOGIN_LOCKOUT_MINUTES`, the right password included. Both the admin's login
page and the self-service one go through `authenticate(request, …)`, where axes' backend
checks the lock.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

LOCKED_OUT_STATUS = 429


def client_ip_address(request: HttpRequest) -> str | None:
    """The address a sign-in attempt comes from.

    `X-Forwarded-For` is honoured only when `GATEHOUSE_TRUSTED_PROXY_COUNT` says how many
    reverse proxies in front of Gatehouse append to it: the client is then the entry that
    the outermost trusted proxy added (counting from the right), so addresses a client
    writes into the header itself are never believed. Without trusted proxies, the peer.
    """
    trusted_proxies: int = settings.GATEHOUSE_TRUSTED_PROXY_COUNT
    peer = request.META.get("REMOTE_ADDR") or None
    if trusted_proxies <= 0:
        return peer
    forwarded = [
        entry.strip()
        for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if entry.strip()
    ]
    if len(forwarded) < trusted_proxies:
        return peer
    return forwarded[-trusted_proxies]


def locked_out_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429 with a page that says what happened and when to try again.

    axes calls this with `(request, response, credentials)` on the synchronous path and
    `(request, credentials)` on the asynchronous one; neither argument is needed here.
    """
    minutes = settings.GATEHOUSE_LOGIN_LOCKOUT_MINUTES
    context = {
        "minutes": minutes,
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "is_admin": request.path.startswith("/admin/"),
    }
    response = TemplateResponse(
        request, "accounts/locked_out.html", context, status=LOCKED_OUT_STATUS
    )
    response["Retry-After"] = str(minutes * 60)
    add_never_cache_headers(response)
    return response.render()
