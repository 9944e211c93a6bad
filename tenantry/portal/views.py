from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("databases")
    return redirect("account_login")
