"""Admin forms for the gateway: upstream key secrets are write-only."""

from __future__ import annotations

from typing import Any

from django import forms

from gateway.models import UpstreamKey
from gateway.secrets import Secret

KEEP_SECRET_HELP = "Leave blank to keep the current secret."
NEW_SECRET_HELP = "The provider's API key. Stored encrypted; it is never shown again."


class UpstreamKeyForm(forms.ModelForm):
    """The secret can be typed in but never comes back out: the field is always rendered empty,
    and on an existing key a blank field keeps the stored secret."""

    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = UpstreamKey
        fields = ("provider", "label", "secret", "weight", "is_enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Without an initial value, a blank field is "unchanged" and the secret never reaches
        # the rendering layer at all.
        self.initial.pop("secret", None)
        is_new = self.instance._state.adding
        self.fields["secret"].required = is_new
        self.fields["secret"].help_text = NEW_SECRET_HELP if is_new else KEEP_SECRET_HELP

    def clean_secret(self) -> Secret:
        value: str = self.cleaned_data["secret"]
        if value:
            return Secret(value)
        # Only reachable on an existing key (the field is required on a new one).
        return self.instance.secret
