"""The control room for people and credentials: cost centers, users, virtual keys, tokens.

Keys and tokens are only ever created, rotated and revoked through `accounts.services`, so the
admin never sees a secret except on the one page that shows a freshly issued one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from weakref import WeakKeyDictionary

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db import models, transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from accounts.admin_audit import AuditedAdminMixin, AuditedModelAdmin
from accounts.formatting import format_money
from accounts.forms import ManagementTokenForm, UserChangeForm, UserCreationForm, VirtualKeyForm
from accounts.models import CostCenter, KeyState, ManagementToken, User, VirtualKey
from accounts.services import (
    management_token_issue,
    management_token_revoke,
    virtual_key_issue,
    virtual_key_revoke,
    virtual_key_rotate,
)

admin.site.site_header = "Gatehouse control room"
admin.site.site_title = "Gatehouse control room"
admin.site.index_title = "Control room"

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec as Fieldsets


def credential_state(revoked_at: datetime | None, expires_at: datetime | None) -> KeyState:
    if revoked_at is not None:
        return KeyState.REVOKED
    if expires_at is not None and expires_at <= timezone.now():
        return KeyState.EXPIRED
    return KeyState.ACTIVE


def active_credentials_q(prefix: str = "") -> Q:
    """Rows (or, with a relation prefix, related rows) neither revoked nor expired now."""
    now = timezone.now()
    return Q(**{f"{prefix}revoked_at__isnull": True}) & (
        Q(**{f"{prefix}expires_at__isnull": True}) | Q(**{f"{prefix}expires_at__gt": now})
    )


def plural(count: int, singular: str, plural_form: str) -> str:
    return f"{count} {singular if count == 1 else plural_form}"


class CredentialStateFilter(admin.SimpleListFilter):
    """Filters virtual keys and management tokens, which share `revoked_at` / `expires_at`."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(KeyState.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        match self.value():
            case KeyState.ACTIVE:
                return queryset.filter(active_credentials_q())
            case KeyState.REVOKED:
                return queryset.filter(revoked_at__isnull=False)
            case KeyState.EXPIRED:
                return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@dataclass(frozen=True, repr=False)
class ShownOnce:
    """A credential and its raw secret, on the way to the only page that displays it."""

    credential: VirtualKey | ManagementToken
    secret: str

    def __repr__(self) -> str:
        return f"ShownOnce({self.credential.public_id})"


# Add-form tokens this session has issued a credential from (accounts.forms.IssueOnce).
ISSUED_SUBMISSIONS_SESSION_KEY = "gatehouse_issued_submissions"
MAX_ISSUED_SUBMISSIONS = 50
# Hands a fresh secret from `save_model` to `response_add` of the same request. Weak keys: an
# entry never outlives its request, even when the view fails in between.
_shown_once_by_request: WeakKeyDictionary[HttpRequest, list[ShownOnce]] = WeakKeyDictionary()


def adopt_saved(target: models.Model, saved: models.Model) -> None:
    """Turn the admin's unsaved form instance into the row a service created, so Django's
    history entry and links point at that row."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


class CredentialAdmin(AuditedModelAdmin):
    """Shared by virtual keys and management tokens: adding one issues it through a service
    and answers with the only page that ever shows its secret, sent with no-store headers."""

    issue_label: str
    issued_title: str
    shown_once_template: str
    add_fieldsets: ClassVar[Fieldsets]
    change_fieldsets: ClassVar[Fieldsets]
    change_readonly_fields: tuple[str, ...]

    def issue(self, credential: Any) -> ShownOnce:
        """Create the credential described by the unsaved form instance, via a service."""
        raise NotImplementedError

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Fieldsets:
        if obj is not None:
            return self.change_fieldsets
        return [*self.add_fieldsets, (None, {"fields": ("submission",), "classes": ("hidden",)})]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None:
            return form
        issued = frozenset(request.session.get(ISSUED_SUBMISSIONS_SESSION_KEY, ()))
        return type(form.__name__, (form,), {"issued_submissions": issued})

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else self.change_readonly_fields

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Every add ends on the confirmation page, so "save and add another" cannot apply.
        context = {
            "title": self.issue_label,
            "issue_label": self.issue_label,
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return super().add_view(request, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"issue_label": self.issue_label, **(extra_context or {})}
        return super().changelist_view(request, context)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        shown = self.issue(obj)
        adopt_saved(obj, shown.credential)
        _shown_once_by_request[request] = [ShownOnce(obj, shown.secret)]
        if form.cleaned_data.get("submission"):
            issued = request.session.get(ISSUED_SUBMISSIONS_SESSION_KEY, [])
            issued = [*issued, form.cleaned_data["submission"]][-MAX_ISSUED_SUBMISSIONS:]
            request.session[ISSUED_SUBMISSIONS_SESSION_KEY] = issued

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        shown = _shown_once_by_request.pop(request, None)
        if shown is None:
            return super().response_add(request, obj, post_url_continue)
        return self.shown_once_response(request, shown, title=self.issued_title)

    def shown_once_response(
        self,
        request: HttpRequest,
        shown: Sequence[ShownOnce],
        *,
        title: str,
        rotated: bool = False,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "shown": shown,
            "rotated": rotated,
            "base_url": request.build_absolute_uri("/").rstrip("/"),
        }
        response = TemplateResponse(request, self.shown_once_template, context)
        add_never_cache_headers(response)
        # Rendered here, inside the caller's transaction: if the page cannot be shown, the
        # secrets are lost, so the keys must not be created or rotated either.
        response.render()
        return response


@admin.register(CostCenter)
class CostCenterAdmin(AuditedModelAdmin):
    list_display = (
        "code",
        "name",
        "external_billing_code",
        "contact_email",
        "budget",
        "member_count",
        "log_bodies",
        "is_active",
    )
    list_filter = ("is_active", "log_bodies")
    search_fields = ("code", "name", "external_billing_code", "contact_email")
    readonly_fields = ("created_at",)
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[CostCenter]:
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="monthly budget", ordering="monthly_budget_usd")
    def budget(self, cost_center: CostCenter) -> str | None:
        return format_money(cost_center.monthly_budget_usd, 2)

    @admin.display(description="members", ordering="member_total")
    def member_count(self, cost_center: Any) -> int:
        return int(cost_center.member_total)


class VirtualKeyInline(admin.TabularInline):
    """The user's keys at a glance; issuing goes through the virtual key page."""

    model = VirtualKey
    fields = ("name", "prefix_display", "state_display", "created_at", "last_used_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False
    verbose_name_plural = "virtual keys"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="key")
    def prefix_display(self, virtual_key: VirtualKey) -> str:
        return f"{virtual_key.prefix}…"

    @admin.display(description="state")
    def state_display(self, virtual_key: VirtualKey) -> str:
        return str(virtual_key.state.label)


@admin.register(User)
class GatehouseUserAdmin(AuditedAdminMixin, UserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Gatehouse", {"fields": ("default_cost_center", "monthly_budget_usd", "max_active_keys")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "email",
                    "default_cost_center",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "default_cost_center",
        "budget",
        "active_keys",
        "is_staff",
        "is_active",
    )
    list_filter = ("default_cost_center", *UserAdmin.list_filter)
    list_select_related = ("default_cost_center",)
    autocomplete_fields = ("default_cost_center",)
    inlines = (VirtualKeyInline,)
    list_per_page = 50

    def get_inlines(self, request: HttpRequest, obj: User | None) -> tuple[type[Any], ...]:
        """A user being created has no keys yet."""
        return tuple(self.inlines) if obj is not None else ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                active_key_total=Count(
                    "virtual_keys", filter=active_credentials_q("virtual_keys__")
                )
            )
        )

    @admin.display(description="monthly budget", ordering="monthly_budget_usd")
    def budget(self, user: User) -> str | None:
        return format_money(user.monthly_budget_usd, 2)

    @admin.display(description="active keys", ordering="active_key_total")
    def active_keys(self, user: Any) -> str:
        return f"{user.active_key_total} / {user.max_active_keys}"


VIRTUAL_KEY_LIMITS: tuple[str, ...] = (
    "allowed_models",
    "tags",
    "rpm_limit",
    "tpm_limit",
    "max_concurrent",
    "monthly_budget_usd",
    "daily_budget_usd",
)


@admin.register(VirtualKey)
class VirtualKeyAdmin(CredentialAdmin):
    form = VirtualKeyForm
    issue_label = "Issue key"
    issued_title = "Key issued"
    shown_once_template = "admin/accounts/virtualkey/issued.html"
    list_display = (
        "name",
        "owner",
        "cost_center_display",
        "prefix_display",
        "state_display",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    list_filter = (CredentialStateFilter, "cost_center", "created_at", "expires_at")
    search_fields = ("name", "public_id", "prefix", "owner__username", "owner__email")
    list_select_related = ("owner", "owner__default_cost_center", "cost_center")
    autocomplete_fields = ("owner", "cost_center")
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = ("revoke_selected", "rotate_selected")
    add_fieldsets: ClassVar[Fieldsets] = [
        (
            None,
            {
                "fields": ("owner", "name", "cost_center", "expires_at"),
                "description": "The secret is generated when you save, and shown once.",
            },
        ),
        ("Limits", {"fields": VIRTUAL_KEY_LIMITS}),
    ]
    change_fieldsets: ClassVar[Fieldsets] = [
        (
            None,
            {
                "fields": (
                    "name",
                    "owner",
                    "cost_center",
                    "public_id",
                    "prefix_display",
                    "state_display",
                )
            },
        ),
        ("Limits", {"fields": VIRTUAL_KEY_LIMITS}),
        (
            "Lifecycle",
            {
                "fields": (
                    "created_at",
                    "expires_at",
                    "last_used_at",
                    "revoked_at",
                    "previous_prefix_display",
                    "previous_secret_valid_until",
                )
            },
        ),
    ]
    change_readonly_fields = (
        "owner",
        "public_id",
        "prefix_display",
        "state_display",
        "created_at",
        "last_used_at",
        "revoked_at",
        "previous_prefix_display",
        "previous_secret_valid_until",
    )

    def issue(self, credential: VirtualKey) -> ShownOnce:
        issued = virtual_key_issue(
            owner=credential.owner,
            name=credential.name,
            cost_center=credential.cost_center,
            expires_at=credential.expires_at,
            allowed_models=credential.allowed_models,
            rpm_limit=credential.rpm_limit,
            tpm_limit=credential.tpm_limit,
            max_concurrent=credential.max_concurrent,
            monthly_budget_usd=credential.monthly_budget_usd,
            daily_budget_usd=credential.daily_budget_usd,
            tags=credential.tags,
        )
        return ShownOnce(issued.virtual_key, issued.secret)

    def has_delete_permission(self, request: HttpRequest, obj: VirtualKey | None = None) -> bool:
        """Revoke instead: deleting would cut the request log off from the key."""
        return False

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        revoked = 0
        for virtual_key in queryset.filter(revoked_at__isnull=True):
            virtual_key_revoke(virtual_key=virtual_key)
            self.log_change(request, virtual_key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {plural(revoked, 'key', 'keys')}.", messages.SUCCESS)

    @admin.action(
        description="Rotate selected keys (old secret keeps working for 24 hours)",
        permissions=["change"],
    )
    def rotate_selected(
        self, request: HttpRequest, queryset: QuerySet[VirtualKey]
    ) -> TemplateResponse | None:
        usable = [key for key in queryset if key.state == KeyState.ACTIVE]
        skipped = queryset.count() - len(usable)
        if skipped:
            self.message_user(
                request,
                f"Skipped {plural(skipped, 'key', 'keys')}: a revoked or expired key cannot be rotated.",
                messages.WARNING,
            )
        if not usable:
            return None
        with transaction.atomic():
            shown = []
            for virtual_key in usable:
                issued = virtual_key_rotate(virtual_key=virtual_key)
                self.log_change(request, virtual_key, "Rotated the secret.")
                shown.append(ShownOnce(issued.virtual_key, issued.secret))
            return self.shown_once_response(request, shown, title="Keys rotated", rotated=True)

    @admin.display(description="cost center")
    def cost_center_display(self, virtual_key: VirtualKey) -> str | None:
        if virtual_key.cost_center is not None:
            return virtual_key.cost_center.code
        default = virtual_key.owner.default_cost_center
        return f"{default.code} (owner's)" if default is not None else None

    @admin.display(description="key", ordering="prefix")
    def prefix_display(self, virtual_key: VirtualKey) -> str:
        return f"{virtual_key.prefix}…"

    @admin.display(description="previous key")
    def previous_prefix_display(self, virtual_key: VirtualKey) -> str | None:
        return f"{virtual_key.previous_prefix}…" if virtual_key.previous_prefix else None

    @admin.display(description="state")
    def state_display(self, virtual_key: VirtualKey) -> str:
        return str(virtual_key.state.label)


@admin.register(ManagementToken)
class ManagementTokenAdmin(CredentialAdmin):
    form = ManagementTokenForm
    issue_label = "Issue token"
    issued_title = "Token issued"
    shown_once_template = "admin/accounts/managementtoken/issued.html"
    list_display = (
        "label",
        "owner",
        "scope",
        "prefix_display",
        "state_display",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    list_filter = ("scope", CredentialStateFilter, "created_at")
    search_fields = ("name", "public_id", "prefix", "owner__username", "owner__email")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = ("revoke_selected",)
    add_fieldsets: ClassVar[Fieldsets] = [
        (
            None,
            {
                "fields": ("owner", "name", "scope", "expires_at"),
                "description": "The token is generated when you save, and shown once.",
            },
        )
    ]
    change_fieldsets: ClassVar[Fieldsets] = [
        (
            None,
            {
                "fields": (
                    "name",
                    "owner",
                    "scope",
                    "public_id",
                    "prefix_display",
                    "state_display",
                    "created_at",
                    "expires_at",
                    "last_used_at",
                    "revoked_at",
                )
            },
        )
    ]
    change_readonly_fields = (
        "owner",
        "scope",
        "public_id",
        "prefix_display",
        "state_display",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    def issue(self, credential: ManagementToken) -> ShownOnce:
        issued = management_token_issue(
            owner=credential.owner,
            scope=credential.scope,
            name=credential.name,
            expires_at=credential.expires_at,
        )
        return ShownOnce(issued.token, issued.secret)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ManagementToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            management_token_revoke(token=token)
            self.log_change(request, token, "Revoked.")
            revoked += 1
        self.message_user(
            request, f"Revoked {plural(revoked, 'token', 'tokens')}.", messages.SUCCESS
        )

    @admin.display(description="name", ordering="name")
    def label(self, token: ManagementToken) -> str:
        return token.name or token.public_id

    @admin.display(description="token", ordering="prefix")
    def prefix_display(self, token: ManagementToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="state")
    def state_display(self, token: ManagementToken) -> str:
        return str(credential_state(token.revoked_at, token.expires_at).label)
