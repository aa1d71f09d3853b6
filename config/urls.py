from django.contrib import admin
from django.urls import include, path

from billing.views import control_room_index
from config.api import api
from gateway.views import live_feed_page, session_detail_page

urlpatterns = [
    # The control room's own pages sit inside the admin (staff only) and come first, so the
    # dashboard answers for the admin's home page.
    path("admin/", admin.site.admin_view(control_room_index), name="control_room"),
    path("admin/live/", admin.site.admin_view(live_feed_page), name="live_feed"),
    path(
        "admin/sessions/<path:session_id>/",
        admin.site.admin_view(session_detail_page),
        name="session_detail",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("accounts.urls")),
]
