"""Developer self-service at the site root: sign in, see your keys and spend, manage keys."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html",
            redirect_authenticated_user=True,
            next_page="accounts:home",
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="accounts:login"), name="logout"),
    path("keys/issue/", views.issue_key, name="issue_key"),
    path("keys/<str:public_id>/rotate/", views.rotate_key, name="rotate_key"),
    path("keys/<str:public_id>/revoke/", views.revoke_key, name="revoke_key"),
]
