"""The portal's forms on subscriptions. Their rules are the verbs' (billing.subscriptions), so
that every channel refuses alike and the refusal is recorded: a form takes what a person may
post, the verb says no with its sentence."""

from __future__ import annotations

from typing import Any

from django import forms
from django.template.defaultfilters import filesizeformat

from tenantry.billing.models import Plan, Subscription
from tenantry.billing.subscriptions import MAX_USERS
from tenantry.databases.forms import NameField


class PlanField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("error_messages", {"invalid_choice": "Choose one of the plans."})
        super().__init__(Plan.objects.all(), empty_label=None, **kwargs)

    def label_from_instance(self, obj: Plan) -> str:
        databases = f"{obj.max_databases} database{'' if obj.max_databases == 1 else 's'}"
        return (
            f"{obj.name}: {obj.price_month} a user a month, or {obj.price_year} a year; "
            f"{databases}, {filesizeformat(obj.storage_bytes)}"
        )


class UsersField(forms.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Users")
        super().__init__(widget=forms.NumberInput(attrs={"min": 1}), **kwargs)

    def clean(self, value: Any) -> int:
        users: int = super().clean(value)
        if users > MAX_USERS:
            raise forms.ValidationError(f"A subscription has at most {MAX_USERS} users.")
        return users


class DatabaseChoice(forms.CharField):
    """One of the account's databases, by name. Any name may be posted: the verb refuses the
    ones it cannot take (a copy, one linked elsewhere) with its sentence."""

    def __init__(self, names: list[str], **kwargs: Any) -> None:
        choices = [(name, name) for name in names]
        if not kwargs.get("required", True):
            choices.insert(0, ("", "None for now"))
        super().__init__(widget=forms.Select(choices=choices), **kwargs)


class SubscribeForm(forms.Form):
    plan = PlanField(widget=forms.RadioSelect)
    period = forms.CharField(
        label="Paid", widget=forms.RadioSelect(choices=Subscription.Period.choices)
    )
    users = UsersField(initial=1, help_text="The accounts that may use its databases, together.")

    def __init__(self, databases: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].initial = Plan.objects.first()
        self.fields["period"].initial = Subscription.Period.MONTH
        self.fields["database"] = DatabaseChoice(
            databases, label="Database to link", required=False,
            help_text="One of the databases you administer that no subscription pays for.",
        )  # fmt: skip


class UsersForm(forms.Form):
    users = UsersField(label="Number of users")


class PlanForm(forms.Form):
    plan = PlanField()


class RenewForm(forms.Form):
    """Carries the renewal date the page showed: a second click (or a second tab) then finds
    the subscription renewed already, and nothing is invoiced twice."""

    AGAIN = "The page did not say which period it showed: reload it and renew again."
    renews_at = forms.DateTimeField(error_messages={"required": AGAIN, "invalid": AGAIN})


class LinkForm(forms.Form):
    def __init__(self, databases: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["database"] = DatabaseChoice(databases, label="Database")


class UnlinkForm(forms.Form):
    database = forms.CharField(widget=forms.HiddenInput)


# Partners' trial projects


class ProjectForm(forms.Form):
    name = NameField(
        label="New trial project",
        help_text="The name of its production database: 3 to 63 lowercase letters, digits and "
        "hyphens.",
    )


class StagingForm(forms.Form):
    name = NameField(label="New staging database")


class RefreshForm(forms.Form):
    database = forms.CharField(widget=forms.HiddenInput)


class ClientLinkForm(forms.Form):
    code = forms.CharField(
        label="Client's subscription code",
        max_length=20,
        help_text="The client must be an administrator of the production database too.",
    )

    def clean_code(self) -> str:
        # As people type a code read aloud: in any case, with spaces around.
        return str(self.cleaned_data["code"]).strip().upper()
