"""Admin forms for accounts: users, and issuing keys without ever asking for a secret."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.utils import timezone

from accounts.models import ManagementToken, User, VirtualKey


class StringListField(forms.Field):
    """A list of short strings typed one per line (or comma-separated) instead of as JSON."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 40})

    def to_python(self, value: Any) -> list[str]:
        if value in self.empty_values:
            return []
        if isinstance(value, list | tuple):
            items = [str(item) for item in value]
        else:
            items = str(value).replace(",", "\n").splitlines()
        return list(dict.fromkeys(item.strip() for item in items if item.strip()))

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return "" if value is None else str(value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(initial) != self.to_python(data)


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("username", "email", "default_cost_center")
        field_classes = {"username": auth_forms.UsernameField}


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes = {"username": auth_forms.UsernameField}


class IssueOnce(forms.ModelForm):
    """A credential's add form carries a token of its own; once a credential was issued from
    it, the same form submitted again (a reload of the result page re-sends it) issues nothing.

    The admin sets `issued_submissions` to the tokens this session has already used."""

    submission = forms.CharField(widget=forms.HiddenInput, required=False)
    issued_submissions: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance._state.adding:
            self.initial["submission"] = secrets.token_urlsafe(16)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("submission") and cleaned["submission"] in self.issued_submissions:
            raise forms.ValidationError(
                "This form was already saved, and what it issued is in the list. "
                "Open a new form to issue another.",
                code="already_issued",
            )
        return cleaned


class VirtualKeyForm(IssueOnce):
    """Adding creates the key through `virtual_key_issue`; the secret is generated, never typed."""

    name = forms.CharField(max_length=200, required=False)
    allowed_models = StringListField(
        required=False,
        help_text="Glob patterns, one per line (e.g. claude-sonnet-*). Empty: all models.",
    )
    tags = StringListField(required=False, help_text="One per line. Routes can match on tags.")

    class Meta:
        model = VirtualKey
        fields = (
            "owner",
            "name",
            "cost_center",
            "expires_at",
            "allowed_models",
            "tags",
            "rpm_limit",
            "tpm_limit",
            "max_concurrent",
            "monthly_budget_usd",
            "daily_budget_usd",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "name" in self.fields and self.instance._state.adding:
            self.fields[
                "name"
            ].help_text = "Leave blank to name it after its owner, e.g. “alice's key”."

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        if not name and not self.instance._state.adding:
            raise forms.ValidationError("A key that exists needs a name.")
        return name

    def clean_expires_at(self) -> datetime | None:
        return _not_in_the_past(self.cleaned_data["expires_at"], adding=self.instance._state.adding)


class ManagementTokenForm(IssueOnce):
    """Adding creates the token through `management_token_issue`; nobody types a secret."""

    class Meta:
        model = ManagementToken
        fields = ("owner", "name", "scope", "expires_at")

    def clean_expires_at(self) -> datetime | None:
        return _not_in_the_past(self.cleaned_data["expires_at"], adding=self.instance._state.adding)


def _not_in_the_past(expires_at: datetime | None, *, adding: bool) -> datetime | None:
    """A new credential that is already expired would only confuse whoever receives it."""
    if adding and expires_at is not None and expires_at <= timezone.now():
        raise forms.ValidationError("Choose a time in the future.")
    return expires_at
