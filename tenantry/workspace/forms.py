from __future__ import annotations

from functools import cache
from typing import Any, cast

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.db import models, transaction
from django.forms import modelform_factory

from tenantry.workspace import models as ws
from tenantry.workspace import releases


class SignInForm(forms.Form):
    login = forms.CharField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput)


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=40, label="Code", help_text="From your authenticator app, or a recovery code."
    )


def company_kind(release: str) -> str:
    """How a contact holds its company at `release`: "" (1.0 has none), "text" (1.1), or
    "row" (since 2.0, a link to a row of the companies table)."""
    Contact = releases.model(release, "Contact")
    field = next((f for f in Contact._meta.fields if f.name == "company"), None)
    if field is None:
        return ""
    return "row" if field.is_relation else "text"


class ContactForm(forms.ModelForm):
    """A contact, on a model of the database's release: `contact_form` makes the class."""

    field_order = ["name", "email", "phone", "company", "notes"]

    def save_to(self, db: str) -> models.Model:
        contact = self.save(commit=False)
        contact.save(using=db)
        return contact


class CompanyNameContactForm(ContactForm):
    """Since 2.0 a company is a row of its own, but a person still types its name: saving finds
    the company by that name, or adds it."""

    company = forms.CharField(max_length=200, required=False)  # stripped, as any CharField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.company is not None:  # type: ignore[attr-defined]
            self.initial["company"] = self.instance.company.name  # type: ignore[attr-defined]

    def save_to(self, db: str) -> models.Model:
        contact = self.save(commit=False)
        name = self.cleaned_data["company"]
        Company = contact._meta.get_field("company").related_model
        defaults = {}
        if any(field.name == "domain" for field in Company._meta.fields):  # since 2.1
            # To begin with, a new company's domain is its first contact's.
            defaults["domain"] = contact.email.partition("@")[2].lower()  # type: ignore[attr-defined]
        # One transaction: a contact that cannot be saved leaves no company behind.
        with transaction.atomic(using=db):
            contact.company = (  # type: ignore[attr-defined]
                Company.objects.using(db).get_or_create(name=name, defaults=defaults)[0]
                if name
                else None
            )
            contact.save(using=db)
        return contact


@cache
def contact_form(release: str) -> type[ContactForm]:
    """The contact form for a database at `release`. A person sees the same form at every
    release: the company, where there is one, is a name typed in."""
    model = releases.model(release, "Contact")
    kind = company_kind(release)
    fields = ["name", "email", "phone", "notes", *(["company"] if kind == "text" else [])]
    base = CompanyNameContactForm if kind == "row" else ContactForm
    return cast(type[ContactForm], modelform_factory(model, form=base, fields=fields))


class MessageForm(forms.Form):
    subject = forms.CharField(max_length=300)
    body = forms.CharField(widget=forms.Textarea, label="Message")


class UploadForm(forms.Form):
    file = forms.FileField()


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = ws.User
        fields = ["name", "contact_email"]


class DatabasePasswordForm(forms.Form):
    """Set or clear the database-specific password; the current password proves it is you."""

    current_password = forms.CharField(
        widget=forms.PasswordInput,
        help_text="Your account password, or your current database password.",
    )
    new_password = forms.CharField(widget=forms.PasswordInput, required=False)
    confirm_password = forms.CharField(widget=forms.PasswordInput, required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.data.get("action") == "set":
            new = data.get("new_password") or ""
            if not new:
                self.add_error("new_password", "Type the new password.")
            elif new != data.get("confirm_password"):
                self.add_error("confirm_password", "The two passwords differ.")
            else:
                try:
                    validate_password(new)
                except forms.ValidationError as error:
                    self.add_error("new_password", error)
        return data
