"""Issuing, rotating and revoking virtual keys and management tokens in the control room."""

import hashlib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains

from accounts.models import ManagementToken, TokenScope, User, VirtualKey
from accounts.selectors import management_token_resolve, virtual_key_resolve
from accounts.services import virtual_key_issue, virtual_key_revoke

SUBMISSION = re.compile(r'<input type="hidden" name="submission" value="([A-Za-z0-9_-]+)"')
SHOWN_SECRET = re.compile(r'<code class="secret">(gh_(?:live|mgmt)_[A-Za-z0-9_-]+)</code>')
VIRTUAL_KEYS = reverse("admin:accounts_virtualkey_changelist")
ADD_VIRTUAL_KEY = reverse("admin:accounts_virtualkey_add")
TOKENS = reverse("admin:accounts_managementtoken_changelist")
ADD_TOKEN = reverse("admin:accounts_managementtoken_add")


def virtual_key_form(owner, **values) -> dict[str, object]:
    return {
        "owner": owner.pk,
        "name": "",
        "cost_center": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "allowed_models": "",
        "tags": "",
        "rpm_limit": "",
        "tpm_limit": "",
        "max_concurrent": "",
        "monthly_budget_usd": "",
        "daily_budget_usd": "",
        "_save": "Save",
        **values,
    }


def shown_secrets(response) -> list[str]:
    return SHOWN_SECRET.findall(response.text)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def test_issuing_a_key_shows_its_secret_once_with_a_shell_snippet(staff_client, alice):
    response = staff_client.post(
        ADD_VIRTUAL_KEY, virtual_key_form(alice.user, name="ci runner", rpm_limit="60")
    )

    assert response.status_code == 200
    [secret] = shown_secrets(response)
    assert re.fullmatch(r"gh_live_[A-Za-z0-9_-]{43}", secret)
    assert response.text.count(secret) == 2
    assert (
        f"<pre>export ANTHROPIC_BASE_URL=http://testserver\nexport ANTHROPIC_API_KEY={secret}</pre>"
        in response.text
    )
    assert "no-store" in response["Cache-Control"]


def test_issued_key_stores_only_the_hash_and_authenticates(staff_client, alice, research):
    response = staff_client.post(
        ADD_VIRTUAL_KEY,
        virtual_key_form(
            alice.user,
            name="ci runner",
            cost_center=research.pk,
            allowed_models="claude-sonnet-*\nclaude-haiku-*, claude-sonnet-*",
            tags="ci",
            monthly_budget_usd="25.00",
        ),
    )

    [secret] = shown_secrets(response)
    key = VirtualKey.objects.get(name="ci runner")
    context = virtual_key_resolve(secret)
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert key.prefix == secret[:16]
    assert context is not None
    assert (context.key_id, context.username, context.cost_center_code) == (
        key.pk,
        "alice",
        "research",
    )
    assert context.allowed_models == ("claude-sonnet-*", "claude-haiku-*")
    assert context.tags == ("ci",)
    assert context.key_monthly_budget_usd == Decimal("25.00")


def test_issuing_a_key_records_who_added_it(staff_client, alice, staff):
    staff_client.post(ADD_VIRTUAL_KEY, virtual_key_form(alice.user, name="ci runner"))

    key = VirtualKey.objects.get(name="ci runner")
    entry = LogEntry.objects.get(object_id=str(key.pk))
    assert (entry.user, entry.is_addition(), entry.object_repr) == (staff, True, str(key))


def test_issuing_a_key_without_a_name_uses_the_owners_name(staff_client, alice):
    staff_client.post(ADD_VIRTUAL_KEY, virtual_key_form(alice.user))

    assert list(
        VirtualKey.objects.filter(owner=alice.user).order_by("pk").values_list("name", flat=True)
    ) == ["alice laptop", "alice's key"]


def test_issuing_a_key_that_has_already_expired_is_refused(staff_client, alice):
    yesterday = timezone.now() - timedelta(days=1)

    response = staff_client.post(
        ADD_VIRTUAL_KEY,
        virtual_key_form(
            alice.user,
            name="stale",
            expires_at_0=yesterday.strftime("%Y-%m-%d"),
            expires_at_1=yesterday.strftime("%H:%M:%S"),
        ),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "expires_at": ["Choose a time in the future."]
    }
    assert not VirtualKey.objects.filter(name="stale").exists()


def test_add_page_never_asks_for_a_secret(staff_client):
    response = staff_client.get(ADD_VIRTUAL_KEY)

    form = response.context["adminform"].form
    assert list(form.fields) == [
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
        "submission",
    ]
    assert form.fields["submission"].widget.is_hidden
    assert 'type="password"' not in response.text


def test_key_pages_offer_to_issue_a_key_rather_than_save_one(staff_client):
    listing = staff_client.get(VIRTUAL_KEYS)
    add = staff_client.get(ADD_VIRTUAL_KEY)

    assertContains(
        listing,
        '<a href="/admin/accounts/virtualkey/add/" class="addlink">Issue key</a>',
        html=True,
    )
    assertContains(
        add, '<input type="submit" value="Issue key" class="default" name="_save">', html=True
    )
    assert add.context["title"] == "Issue key"
    assert 'name="_addanother"' not in add.text
    assert 'name="_continue"' not in add.text


def test_list_and_change_pages_show_the_prefix_but_never_the_secret_or_hash(staff_client, alice):
    key = VirtualKey.objects.get(owner=alice.user)

    pages = [
        staff_client.get(VIRTUAL_KEYS),
        staff_client.get(reverse("admin:accounts_virtualkey_change", args=[key.pk])),
        staff_client.get(reverse("admin:accounts_user_change", args=[alice.user.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        assert f"{key.prefix}…" in page.text
        assert alice.secret not in page.text
        assert key.secret_hash not in page.text


def test_editing_a_key_changes_its_limits_and_keeps_its_secret(staff_client, alice):
    key = VirtualKey.objects.get(owner=alice.user)

    response = staff_client.post(
        reverse("admin:accounts_virtualkey_change", args=[key.pk]),
        virtual_key_form(alice.user, name="alice laptop", rpm_limit="30", tags="laptop"),
    )

    key.refresh_from_db()
    context = virtual_key_resolve(alice.secret)
    assert response.status_code == 302
    assert (key.rpm_limit, key.tags) == (30, ["laptop"])
    assert context is not None
    assert context.rpm_limit == 30


def test_an_existing_key_cannot_lose_its_name(staff_client, alice):
    key = VirtualKey.objects.get(owner=alice.user)

    response = staff_client.post(
        reverse("admin:accounts_virtualkey_change", args=[key.pk]),
        virtual_key_form(alice.user, name=""),
    )

    key.refresh_from_db()
    assert response.context["adminform"].form.errors == {
        "name": ["A key that exists needs a name."]
    }
    assert key.name == "alice laptop"


def test_keys_cannot_be_deleted_only_revoked(staff_client, alice):
    key = VirtualKey.objects.get(owner=alice.user)

    response = staff_client.post(
        reverse("admin:accounts_virtualkey_delete", args=[key.pk]), {"post": "yes"}
    )

    assert response.status_code == 403
    assert VirtualKey.objects.filter(pk=key.pk).exists()


def test_revoke_action_makes_the_selected_keys_stop_authenticating(staff_client, alice, bob):
    alice_key = VirtualKey.objects.get(owner=alice.user)

    response = staff_client.post(
        VIRTUAL_KEYS,
        {"action": "revoke_selected", "_selected_action": [alice_key.pk]},
        follow=True,
    )

    assert [str(message) for message in response.context["messages"]] == ["Revoked 1 key."]
    assert virtual_key_resolve(alice.secret) is None
    assert virtual_key_resolve(bob.secret) is not None


def test_rotate_action_shows_the_new_secret_once_and_the_old_one_works_during_grace(
    staff_client, alice
):
    key = VirtualKey.objects.get(owner=alice.user)

    response = staff_client.post(
        VIRTUAL_KEYS, {"action": "rotate_selected", "_selected_action": [key.pk]}
    )

    assert response.status_code == 200
    [new_secret] = shown_secrets(response)
    assert new_secret != alice.secret
    assert f"export ANTHROPIC_API_KEY={new_secret}" in response.text
    assert "no-store" in response["Cache-Control"]
    key.refresh_from_db()
    assert (
        f"keeps working until {key.previous_secret_valid_until:%Y-%m-%d %H:%M} UTC."
        in response.text
    )
    new_context = virtual_key_resolve(new_secret)
    old_context = virtual_key_resolve(alice.secret)
    assert new_context is not None
    assert old_context is not None
    assert new_context.key_id == old_context.key_id == key.pk
    assert new_context.secret_valid_until is None
    assert old_context.secret_valid_until is not None
    assert (
        timedelta(hours=23, minutes=59)
        < old_context.secret_valid_until - timezone.now()
        <= timedelta(hours=24)
    )


def test_rotate_action_skips_revoked_keys(staff_client, alice, bob):
    alice_key = VirtualKey.objects.get(owner=alice.user)
    bob_key = VirtualKey.objects.get(owner=bob.user)
    virtual_key_revoke(virtual_key=bob_key)
    bob_hash = bob_key.secret_hash

    response = staff_client.post(
        VIRTUAL_KEYS,
        {"action": "rotate_selected", "_selected_action": [alice_key.pk, bob_key.pk]},
    )

    bob_key.refresh_from_db()
    assert len(shown_secrets(response)) == 1
    assert [str(message) for message in response.context["messages"]] == [
        "Skipped 1 key: a revoked or expired key cannot be rotated."
    ]
    assert bob_key.secret_hash == bob_hash


def test_state_filter_lists_only_revoked_keys(staff_client, alice, bob):
    virtual_key_revoke(virtual_key=VirtualKey.objects.get(owner=bob.user))

    response = staff_client.get(VIRTUAL_KEYS, {"state": "revoked"})

    assert [key.name for key in response.context["cl"].result_list] == ["bob laptop"]


def test_issuing_a_management_token_shows_it_once_and_it_authenticates(staff_client, alice):
    response = staff_client.post(
        ADD_TOKEN,
        {
            "owner": alice.user.pk,
            "name": "terraform",
            "scope": "admin",
            "expires_at_0": "",
            "expires_at_1": "",
            "_save": "Save",
        },
    )

    assert response.status_code == 200
    [secret] = shown_secrets(response)
    token = ManagementToken.objects.get(name="terraform")
    assert re.fullmatch(r"gh_mgmt_[A-Za-z0-9_-]{43}", secret)
    assert f"export GATEHOUSE_TOKEN={secret}" in response.text
    assert "no-store" in response["Cache-Control"]
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert management_token_resolve(secret) == token
    assert token.scope == TokenScope.ADMIN


def test_token_list_and_change_pages_never_show_the_token(staff_client, alice):
    response = staff_client.post(
        ADD_TOKEN,
        {"owner": alice.user.pk, "name": "terraform", "scope": "read", "_save": "Save"},
    )
    [secret] = shown_secrets(response)
    token = ManagementToken.objects.get(name="terraform")

    pages = [
        staff_client.get(TOKENS),
        staff_client.get(reverse("admin:accounts_managementtoken_change", args=[token.pk])),
    ]

    for page in pages:
        assert page.status_code == 200
        assert f"{token.prefix}…" in page.text
        assert secret not in page.text
        assert token.secret_hash not in page.text


def test_revoke_action_makes_the_selected_tokens_stop_authenticating(staff_client, alice):
    response = staff_client.post(
        ADD_TOKEN, {"owner": alice.user.pk, "name": "terraform", "scope": "read", "_save": "Save"}
    )
    [secret] = shown_secrets(response)
    token = ManagementToken.objects.get(name="terraform")

    response = staff_client.post(
        TOKENS, {"action": "revoke_selected", "_selected_action": [token.pk]}, follow=True
    )

    assert [str(message) for message in response.context["messages"]] == ["Revoked 1 token."]
    assert management_token_resolve(secret) is None


def test_user_list_shows_budget_and_active_keys_against_the_limit(staff_client, alice):
    alice.user.monthly_budget_usd = Decimal("1250.5")
    alice.user.save()
    virtual_key_issue(owner=alice.user, name="spare")
    virtual_key_revoke(virtual_key=virtual_key_issue(owner=alice.user, name="old").virtual_key)

    response = staff_client.get(reverse("admin:accounts_user_changelist"), {"q": "alice"})

    assert '<td class="field-budget">$1,250.50</td>' in response.text
    assert '<td class="field-active_keys">2 / 5</td>' in response.text


def test_adding_a_user_sets_their_default_cost_center(staff_client, research):
    response = staff_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "dora",
            "email": "dora@example.com",
            "default_cost_center": research.pk,
            "usable_password": "true",
            "password1": "a-long-enough-passphrase",
            "password2": "a-long-enough-passphrase",
            "_save": "Save",
        },
    )

    assert response.status_code == 302
    dora = User.objects.get(username="dora")
    assert (
        dora.email,
        dora.default_cost_center,
        dora.check_password("a-long-enough-passphrase"),
    ) == (
        "dora@example.com",
        research,
        True,
    )


def test_cost_center_list_shows_the_budget_in_dollars(staff_client, research):
    response = staff_client.get(reverse("admin:accounts_costcenter_changelist"))

    assert '<td class="field-budget">$500.00</td>' in response.text


def submission_token(add_page) -> str:
    [token] = SUBMISSION.findall(add_page.text)
    return token


def test_saving_the_same_add_form_again_issues_no_second_key(staff_client, alice):
    form = virtual_key_form(alice.user, name="laptop")
    form["submission"] = submission_token(staff_client.get(ADD_VIRTUAL_KEY))
    first = staff_client.post(ADD_VIRTUAL_KEY, form)

    again = staff_client.post(ADD_VIRTUAL_KEY, form)  # Back, then Save (or a reload)

    assert len(shown_secrets(first)) == 1
    assert shown_secrets(again) == []
    assertContains(again, "This form was already saved, and what it issued is in the list.")
    assert VirtualKey.objects.filter(owner=alice.user, name="laptop").count() == 1


def test_each_fresh_add_form_issues_its_own_key(staff_client, alice):
    for name in ("first", "second"):
        form = virtual_key_form(alice.user, name=name)
        form["submission"] = submission_token(staff_client.get(ADD_VIRTUAL_KEY))
        assert len(shown_secrets(staff_client.post(ADD_VIRTUAL_KEY, form))) == 1

    assert set(VirtualKey.objects.filter(owner=alice.user).values_list("name", flat=True)) >= {
        "first",
        "second",
    }


def test_a_form_that_failed_validation_can_be_corrected_and_saved(staff_client, alice):
    form = virtual_key_form(alice.user, name="retry", rpm_limit="not a number")
    form["submission"] = submission_token(staff_client.get(ADD_VIRTUAL_KEY))
    refused = staff_client.post(ADD_VIRTUAL_KEY, form)

    saved = staff_client.post(ADD_VIRTUAL_KEY, {**form, "rpm_limit": "60"})

    assert shown_secrets(refused) == []
    assert len(shown_secrets(saved)) == 1


def test_saving_the_same_token_form_again_issues_no_second_token(staff_client, alice):
    form = {"owner": alice.user.pk, "name": "terraform", "scope": "read", "_save": "Save"}
    form["submission"] = submission_token(staff_client.get(ADD_TOKEN))
    first = staff_client.post(ADD_TOKEN, form)

    again = staff_client.post(ADD_TOKEN, form)

    assert len(shown_secrets(first)) == 1
    assertContains(again, "This form was already saved")
    assert ManagementToken.objects.filter(owner=alice.user, name="terraform").count() == 1
