from __future__ import annotations

from typing import Any

from django import forms

from tenantry.databases.models import Database, Membership, validate_name


class NameField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text", "3 to 63 lowercase letters, digits and hyphens. It becomes the URL."
        )
        super().__init__(**kwargs)

    def clean(self, value: Any) -> str:
        name = super().clean(value).strip().lower()
        validate_name(name)
        return name


class CreateForm(forms.Form):
    name = NameField(label="Database name")


class RenameForm(forms.Form):
    name = NameField(label="New name")


class DuplicateForm(forms.Form):
    name = NameField(label="Name of the copy")
    for_testing = forms.BooleanField(
        label="For testing purposes",
        required=False,
        initial=True,
        help_text="Turns off the copy's mail, payments, delivery orders and scheduled jobs.",
    )


class DeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the database name to confirm")

    def __init__(self, database: Database, *args: Any, **kwargs: Any) -> None:
        self.database = database
        super().__init__(*args, **kwargs)

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.database.name:
            raise forms.ValidationError("This is not the name of the database.")
        return value


class InviteForm(forms.Form):
    emails = forms.CharField(
        label="Email addresses",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Add more users: one address per line, or separated by commas.",
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.USER)

    def clean_emails(self) -> list[str]:
        from tenantry.databases.members import parse_emails

        return parse_emails(self.cleaned_data["emails"])
