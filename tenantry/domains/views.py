from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotFound
from django.views.decorators.http import require_GET

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
