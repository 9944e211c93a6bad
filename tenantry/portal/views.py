from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("databases")
    return redirect("account_login")


@login_required
def subscriptions(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/subscriptions.html")
