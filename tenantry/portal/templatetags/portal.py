"""Filters for the portal's pages, allauth's among them.

allauth's headings, buttons and field labels are in Title Case ("Confirm Email Address"), ours
in sentence case. The allauth elements we draw (templates/allauth/elements/) pass their words
through `sentence_case`, so every allauth page speaks like ours without a copy of each of its
templates."""

from __future__ import annotations

import re

from allauth.mfa.models import Authenticator
from django import template

register = template.Library()

TAG = re.compile(r"(<[^>]*>)")
# A capitalized word inside the text: after a space or a hyphen ("Two-Factor"), not after the
# end of a sentence. Acronyms ("IP") and camel case ("WebAuthn") do not match.
INNER_CAPITAL = re.compile(r"(?<=[\s-])(?<![.!?:] )[A-Z](?=[a-z]+\b)")
LABEL = re.compile(r"(<label\b[^>]*>)(.*?)(</label>)", re.DOTALL)
PLACEHOLDER = re.compile(r'(placeholder=")([^"]*)(")')


def _sentence(text: str) -> str:
    """Lowercases the capitals of `text`'s inner words, outside its tags; the first word of
    `text` keeps its capital."""
    parts = TAG.split(text)
    first = True
    for i, part in enumerate(parts):
        if i % 2 or not part.strip():  # a tag, or nothing but spaces
            continue
        start = len(part) - len(part.lstrip()) + 1 if first else 0  # past the first capital
        first = False
        parts[i] = part[:start] + INNER_CAPITAL.sub(lambda m: m.group().lower(), part[start:])
    return "".join(parts)


@register.filter(is_safe=True)
def sentence_case(value: object) -> str:
    """ "Confirm Email Address" becomes "Confirm email address"."""
    return _sentence(str(value))


@register.filter(is_safe=True)
def sentence_case_labels(value: object) -> str:
    """Sentence case for the labels and placeholders of a rendered form, and nothing else
    (not a value a person typed into a textarea, nor a help text)."""
    html = LABEL.sub(lambda m: m[1] + _sentence(m[2]) + m[3], str(value))
    return PLACEHOLDER.sub(lambda m: m[1] + _sentence(m[2]) + m[3], html)


@register.filter
def has_security_key(user: object) -> bool:
    """Whether the account has a WebAuthn authenticator (a security key or a passkey)."""
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.WEBAUTHN).exists()
