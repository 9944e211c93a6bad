from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("databases")
    return redirect("account_login")


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's sign-in is the portal's: staff sign in there (with their second factor);
    a signed-in account that is not staff is refused, not shown another form."""
    if request.user.is_authenticated:
        raise PermissionDenied("These pages are for Tenantry's staff.")
    return redirect_to_login(request.GET.get("next", "/admin/"), "account_login")


def ping(request: HttpRequest) -> HttpResponse:
    """The cheapest page the whole middleware stack serves: bench/load.py's baseline (only
    with TENANTRY_BENCH=1)."""
    return HttpResponse("pong", content_type="text/plain")
