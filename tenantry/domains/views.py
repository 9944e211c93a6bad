from __future__ import annotations

import ipaddress

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

from tenantry.databases.access import database_admin_required
from tenantry.databases.models import Database
from tenantry.domains import verbs
from tenantry.domains.models import Domain
from tenantry.gateway import sites
from tenantry.gateway.middleware import database_name


def _asked_locally(request: HttpRequest) -> bool:
    """From TENANTRY_TLS_ASK_FROM, and not relayed by the proxy (which adds X-Forwarded-For to
    what it passes on from outside)."""
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.TLS_ASK_FROM)


@require_GET
def tls_ask(request: HttpRequest) -> HttpResponse:
    """Caddy's on-demand TLS asks here before it gets a certificate for a name: 200 for a
    verified custom domain or a live database's `<name>.<base domain>`, 404 for anything else
    (so nobody makes Caddy request certificates for names of their choosing)."""
    if not _asked_locally(request):
        return HttpResponseForbidden("Only the proxy on this machine asks here.")
    host = request.GET.get("domain", "").strip().rstrip(".").lower()
    name = database_name(host)
    if name is not None:
        database = sites.lookup(name)
        served = database is not None and not database.is_expired
    else:
        served = Domain.objects.filter(
            name=host, state=Domain.State.VERIFIED, database__name__isnull=False
        ).exists()
    return HttpResponse("yes") if served else HttpResponseNotFound("no")


class AddForm(forms.Form):
    domain = forms.CharField(
        max_length=300, label="Domain", help_text="Such as shop.example.com or example.com."
    )


@database_admin_required
def domains(request: HttpRequest, database: Database) -> HttpResponse:
    """A database's custom domains: add one, read the record to add, verify, make primary,
    remove. Each refusal is the verb's sentence, shown as the form's error."""
    form = AddForm(request.POST if request.POST.get("action") == "add" else None)
    action = request.POST.get("action")
    if request.method == "POST":
        by = request.user
        try:
            if action == "add":
                if form.is_valid():
                    added = verbs.add(database, form.cleaned_data["domain"], by=by)  # type: ignore[arg-type]
                    messages.success(request, f"{added.display} is added: add its DNS record.")
                    return redirect("database_domains", database.name)
            else:
                domain = get_object_or_404(
                    Domain, database=database, name=request.POST.get("domain", "")
                )
                if action == "verify":
                    found = verbs.verify(domain, by=by)  # type: ignore[arg-type]
                    if found.state == Domain.State.VERIFIED:
                        messages.success(request, f"{found.display} is verified.")
                    else:
                        messages.error(request, f"{found.display} is not verified: {found.reason}.")
                elif action == "primary":
                    verbs.make_primary(domain, by=by)  # type: ignore[arg-type]
                    messages.success(request, f"{domain.display} is now the primary domain.")
                elif action == "remove":
                    verbs.remove(domain, by=by)  # type: ignore[arg-type]
                    messages.success(request, f"{domain.display} is removed.")
                else:
                    return HttpResponseBadRequest("Unknown action.")
                return redirect("database_domains", database.name)
        except ValidationError as error:
            form.add_error(None, " ".join(error.messages))
    ctx = {
        "database": database,
        "domains": database.domains.all(),  # type: ignore[attr-defined]
        "form": form,
        "target": verbs.target(database),
        "challenge": verbs.CHALLENGE,
    }
    return render(request, "domains/domains.html", ctx)
