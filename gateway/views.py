"""Control-room pages about traffic, served inside the admin (staff who may read the request
log): one Claude Code session, and the live request feed."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.template.response import TemplateResponse

from gateway import live_feed
from gateway.dashboard import can_view_traffic, session_detail


def session_detail_page(request: HttpRequest, session_id: str) -> TemplateResponse:
    if not can_view_traffic(request.user):
        raise PermissionDenied
    detail = session_detail(session_id)
    if detail is None:
        raise Http404("No request belongs to this session.")
    context = {
        **admin.site.each_context(request),
        "title": f"Claude Code session {session_id}",
        "detail": detail,
        "timeline": detail.timeline(),
    }
    return TemplateResponse(request, "admin/gateway/session_detail.html", context)


def live_feed_page(request: HttpRequest) -> TemplateResponse:
    if not can_view_traffic(request.user):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": "Live requests",
        "recent": live_feed.recent_entries(),
        "socket_path": live_feed.SOCKET_PATH,
    }
    return TemplateResponse(request, "admin/gateway/live_feed.html", context)
