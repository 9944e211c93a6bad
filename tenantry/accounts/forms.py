from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.utils import timezone

from tenantry.accounts.models import User


class ProfileForm(forms.ModelForm[User]):
    class Meta:
        model = User
        fields = ["name", "company", "phone", "country"]


class EmailChangeForm(forms.Form):
    email = forms.EmailField(label="New email address")

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if email == self.user.email:
            raise forms.ValidationError("This is already your account email.")
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("Another account already uses this email address.")
        return email


class EmailCodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=20)

    def clean_code(self) -> str:
        return self.cleaned_data["code"].strip().upper().replace(" ", "")


EXPIRY_CHOICES = [("", "Never"), ("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year")]


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “deploy script”.")
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False, label="Expires")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

    def expires_at(self) -> Any:
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=int(days)) if days else None


class DeleteAccountForm(forms.Form):
    confirm = forms.CharField(label="Type your email address to confirm")

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip().lower()
        if value != self.user.email.lower():
            raise forms.ValidationError("This is not your account's email address.")
        refusals = self.user.deletion_refusals()
        if refusals:
            raise forms.ValidationError(refusals)
        return value
