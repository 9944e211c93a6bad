from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password

from tenantry.workspace import models as ws


class SignInForm(forms.Form):
    login = forms.CharField(max_length=254)
    password = forms.CharField(widget=forms.PasswordInput)


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=40, label="Code", help_text="From your authenticator app, or a recovery code."
    )


class ContactForm(forms.ModelForm):
    class Meta:
        model = ws.Contact
        fields = ["name", "email", "phone", "company", "notes"]


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
