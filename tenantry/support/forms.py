"""The forms of support requests and of the support desk. Their rules are the verbs' (the files'
limits, the texts): a form takes what a person may post, the verb says no with its sentence."""

from __future__ import annotations

from typing import Any

from django import forms

from tenantry.databases.lifecycle import MAX_EXTENSION_DAYS
from tenantry.support.models import Ticket
from tenantry.support.verbs import MAX_FILE_BYTES, MAX_FILES


class FilesInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class FilesField(forms.FileField):
    """Several files (the verbs count and weigh them)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_empty_file", True)  # refused by the verb, with the file's name
        kwargs.setdefault("label", "Attachments")
        kwargs.setdefault(
            "help_text",
            f"Up to {MAX_FILES} files of {MAX_FILE_BYTES // 1024 // 1024} MB each: screenshots, "
            "logs.",
        )
        super().__init__(widget=FilesInput, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        files = data if isinstance(data, list | tuple) else [data]
        return [super(FilesField, self).clean(file, initial) for file in files if file]


class RequestForm(forms.Form):
    database = forms.CharField(required=False)
    category = forms.ChoiceField(choices=Ticket.Category.choices)
    subject = forms.CharField(max_length=200)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="What happened, what you expected, and since when.",
    )
    attachments = FilesField()

    def __init__(self, names: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "None: my account in general")] + [(n, n) for n in names]
        self.fields["database"].widget = forms.Select(choices=choices)
        self.names = names

    def clean_database(self) -> str:
        name: str = self.cleaned_data["database"]
        if name and name not in self.names:
            raise forms.ValidationError("Choose one of your databases.")
        return name


class ReplyForm(forms.Form):
    body = forms.CharField(label="Reply", widget=forms.Textarea(attrs={"rows": 5}))
    attachments = FilesField()


class LoginForm(forms.Form):
    """Support changes a database user's sign-in login (product.md section 2)."""

    account = forms.ChoiceField(label="User")
    login = forms.EmailField(label="New login", max_length=254)  # the database's column

    def __init__(self, emails: list[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["account"].choices = [(e, e) for e in emails]  # type: ignore[attr-defined]


class ExtendForm(forms.Form):
    days = forms.IntegerField(
        min_value=1, max_value=MAX_EXTENSION_DAYS, initial=15, label="Days to add"
    )


class DeskFilter(forms.Form):
    state = forms.ChoiceField(choices=[("", "Any state")] + Ticket.State.choices, required=False)
    category = forms.ChoiceField(
        choices=[("", "Any category")] + Ticket.Category.choices, required=False
    )
