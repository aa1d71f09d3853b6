"""Developer self-service: a signed-in person's own keys, spend and set-up snippet.

Everyone here acts only on their own keys: every lookup is filtered by the signed-in
owner, so another person's key id is simply not found. Every change is a POST (CSRF
protected); a new or rotated secret is shown on the response to that POST (no-store) and
never again: only its hash is kept.

A browser's back button or reload sends such a POST again. Issue and rotate forms carry a
single-use token kept in the session, so a resent form changes nothing: it ends on the key
list with a message instead of issuing (or rotating) a second time.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse_lazy
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User, VirtualKey
from accounts.selectors import active_virtual_key_count, virtual_keys_owned_by
from accounts.self_service import (
    KeyLimitReached,
    own_virtual_key_issue,
    own_virtual_key_revoke,
    own_virtual_key_rotate,
)
from accounts.services import IssuedVirtualKey

signed_in = login_required(login_url=reverse_lazy("accounts:login"))

FORM_TOKENS_SESSION_KEY = "self_service_form_tokens"
MAX_FORM_TOKENS = 10
RESENT = (
    "That form had already been sent (the page was reloaded or revisited), so nothing "
    "changed. Its secret was shown once; if you did not copy it, revoke that key."
)


class IssueKeyForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        required=False,
        help_text="Where you will use it, e.g. “laptop” or “CI”. Optional.",
    )


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


@require_GET
@signed_in
def home(request: HttpRequest) -> TemplateResponse:
    user = _owner(request)
    keys = list(virtual_keys_owned_by(user.pk).select_related("cost_center"))
    active = active_virtual_key_count(user.pk)
    context = {
        "keys": keys,
        "active_count": active,
        "can_issue": active < user.max_active_keys,
        "form": IssueKeyForm(),
        "form_token": _new_form_token(request),
        "base_url": _base_url(request),
    }
    response = TemplateResponse(request, "accounts/home.html", context)
    add_never_cache_headers(response)
    return response


@require_POST
@signed_in
def issue_key(request: HttpRequest) -> HttpResponse:
    if not _spend_form_token(request):
        messages.warning(request, RESENT)
        return redirect("accounts:home")
    form = IssueKeyForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, " ".join(str(error) for errors in form.errors.values() for error in errors)
        )
        return redirect("accounts:home")
    try:
        with transaction.atomic():
            issued = own_virtual_key_issue(owner=_owner(request), name=form.cleaned_data["name"])
            return _shown_once(request, issued, title="Your new key")
    except KeyLimitReached as error:
        messages.error(request, " ".join(error.messages))
        return redirect("accounts:home")


@require_POST
@signed_in
def rotate_key(request: HttpRequest, public_id: str) -> HttpResponse:
    virtual_key = _own_key(request, public_id)
    if not _spend_form_token(request):
        messages.warning(request, RESENT)
        return redirect("accounts:home")
    try:
        with transaction.atomic():
            issued = own_virtual_key_rotate(owner=_owner(request), virtual_key=virtual_key)
            return _shown_once(request, issued, title="Your key, rotated", rotated=True)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("accounts:home")


@require_POST
@signed_in
def revoke_key(request: HttpRequest, public_id: str) -> HttpResponse:
    virtual_key = own_virtual_key_revoke(
        owner=_owner(request), virtual_key=_own_key(request, public_id)
    )
    messages.success(request, f"Revoked {virtual_key}. It stops working within seconds.")
    return redirect("accounts:home")


def _new_form_token(request: HttpRequest) -> str:
    token = secrets.token_urlsafe(16)
    recent = request.session.get(FORM_TOKENS_SESSION_KEY, [])[-(MAX_FORM_TOKENS - 1) :]
    request.session[FORM_TOKENS_SESSION_KEY] = [*recent, token]
    return token


def _spend_form_token(request: HttpRequest) -> bool:
    """True once per token handed out by `home`; False when a form is sent again."""
    tokens = request.session.get(FORM_TOKENS_SESSION_KEY, [])
    token = request.POST.get("form_token", "")
    if token not in tokens:
        return False
    request.session[FORM_TOKENS_SESSION_KEY] = [item for item in tokens if item != token]
    return True


def _owner(request: HttpRequest) -> User:
    """The signed-in person (every view here requires signing in)."""
    return cast(User, request.user)


def _own_key(request: HttpRequest, public_id: str) -> VirtualKey:
    return get_object_or_404(virtual_keys_owned_by(_owner(request).pk), public_id=public_id)


def _shown_once(
    request: HttpRequest, issued: IssuedVirtualKey, *, title: str, rotated: bool = False
) -> TemplateResponse:
    context: dict[str, Any] = {
        "title": title,
        "virtual_key": issued.virtual_key,
        "secret": issued.secret,
        "rotated": rotated,
        "base_url": _base_url(request),
    }
    response = TemplateResponse(request, "accounts/key_shown_once.html", context)
    add_never_cache_headers(response)
    # Rendered inside the caller's transaction: if the page cannot be shown, the secret is
    # lost, so the key must not be issued or rotated either.
    response.render()
    return response
