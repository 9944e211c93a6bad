from __future__ import annotations

from typing import Any

from django import forms

from tenantry.databases.models import Database, Membership, normalize_name


class NameField(forms.CharField):
    """A database name as typed: one with capitals comes back in lowercase with a sentence, so
    the person sees the name it would make before it is made. Never cut to fit."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text", "3 to 63 lowercase letters, digits and hyphens. It becomes the URL."
        )
        super().__init__(**kwargs)

    def bound_data(self, data: Any, initial: Any) -> Any:
        return normalize_name(data) if isinstance(data, str) else data

    def clean(self, value: Any) -> str:
        typed = super().clean(value)
        return checked_name(typed) if typed.strip() or self.required else ""


def checked_name(typed: str) -> str:
    """The name typed, if it is the name it would make; the rules are the verb's (see
    databases.lifecycle), so that every channel refuses alike and the refusal is recorded."""
    name = normalize_name(typed)
    if name != typed.strip():
        raise forms.ValidationError(
            f"Database names are lowercase: this one would be “{name}”. "
            "Send it again to use it, or change it.",
            code="lowercase",
        )
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


class RestoreForm(forms.Form):
    """Restore a stored backup (`backup` given) or a ZIP sent with the form; over `database`
    (when given) or into a new database."""

    file = forms.FileField(label="Backup ZIP", required=False)
    into = forms.ChoiceField(
        label="Restore",
        choices=[
            ("new", "Into a new database"),
            ("over", "Over this database: its current state is backed up first"),
        ],
        widget=forms.RadioSelect,
        initial="new",
    )
    name = NameField(label="Name of the new database", required=False)
    identity = forms.ChoiceField(
        label="Identity",
        choices=[
            ("copy", "As a copy: the database gets a new identity (uuid)"),
            ("moved", "As moved: it keeps the identity of the backup"),
        ],
        widget=forms.RadioSelect,
        initial="copy",
        help_text="A copy holds the mails queued at backup time until an administrator of the "
        "database releases them (on its Outgoing mail page); moved keeps them queued.",
    )
    neutralize = forms.BooleanField(
        label="Neutralize",
        required=False,
        help_text="Turns off its mail, payments, delivery orders and scheduled jobs.",
    )

    def __init__(self, database: Database | None, has_backup: bool, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if database is None:
            del self.fields["into"]
        if not has_backup:
            self.fields["file"].required = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("into", "new") == "over":
            self.errors.pop("name", None)  # a name typed for a new database is not used
        elif not data.get("name") and "name" not in self.errors:
            self.add_error("name", "Name the new database.")
        return data


class UpgradeForm(forms.Form):
    """Which release, and whether to test the upgrade on a copy first (the button pressed)."""

    # Any text: the releases offered are the radio buttons, and a release posted by hand is
    # refused by the verb (upgrade.start), with its sentence, and recorded.
    release = forms.CharField(label="Release", widget=forms.RadioSelect)
    kind = forms.ChoiceField(choices=[("test", "Test upgrade"), ("production", "Upgrade")])

    def __init__(self, offered: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        latest = offered[-1] if offered else None
        self.fields["release"].widget.choices = [
            (version, f"{version} (latest)" if version == latest else version)
            for version in offered
        ]
        self.fields["release"].initial = latest
