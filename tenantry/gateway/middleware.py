"""Routing by host: the portal's hosts reach the portal, `<name>.<BASE_DOMAIN>` and a database's
verified custom domains reach that database's workspace app (or its primary domain, by a 301),
a pending custom domain a page that says so, and any other host a 404 in the portal's look."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponsePermanentRedirect,
)
from django.http.request import split_domain_port
from django.template.loader import render_to_string

from tenantry.domains.models import Domain
from tenantry.gateway import sites

WORKSPACE_URLCONF = "tenantry.workspace.urls"
# A DNS label (at most 63 characters): anything else is no database's, and is turned away
# before it costs a lookup.
LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
HOSTNAME = re.compile(rf"(?:{LABEL.pattern}\.)+{LABEL.pattern}")


def database_name(host: str) -> str | None:
    """The database a host name points at, or None when it is no database's host."""
    suffix = "." + settings.BASE_DOMAIN
    if host.endswith(suffix):
        label = host[: -len(suffix)]
        if LABEL.fullmatch(label):
            return label
    return None


def custom_domain(host: str) -> Domain | None:
    """The custom domain a host is, if any. A name under the base domain is not one, and
    neither is what is no host name at all: those cost no lookup."""
    if host.endswith("." + settings.BASE_DOMAIN) or not HOSTNAME.fullmatch(host):
        return None
    found = Domain.objects.filter(name=host).select_related("database")
    # Verified by one database; else pending (or failed) for one or more, which say so.
    return found.filter(state=Domain.State.VERIFIED).first() or found.first()


def portal_hosts() -> set[str]:
    return set(settings.PORTAL_HOSTS)


def page(template: str, **context: object) -> str:
    """One of the gateway's own pages, in the portal's look with a link to the portal. Drawn
    without the request, so it reads no session and no account: nothing is queried for a host
    that is no database's."""
    return render_to_string(template, {"portal_url": settings.PORTAL_URL, **context})


class GatewayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        host, _ = split_domain_port(request._get_raw_host())  # type: ignore[attr-defined]
        if host in portal_hosts():
            return self.get_response(request)
        name = database_name(host)
        if name is None:  # a custom domain, or nothing
            domain = custom_domain(host)
            if domain is None or domain.database.name is None:
                return HttpResponseNotFound(page("workspace/not_found.html"))
            if domain.state != Domain.State.VERIFIED:
                return HttpResponseNotFound(page("workspace/domain_pending.html", domain=domain))
            name = domain.database.name
        database = sites.lookup(name)
        if database is None:
            return HttpResponseNotFound(page("workspace/not_found.html", name=name))
        if database.is_expired:
            return HttpResponseForbidden(page("workspace/expired.html", database=database))
        primary = database.primary_domain
        if primary and host != primary and request.method in ("GET", "HEAD"):
            # Its other hosts lead to its primary domain; posts stay (Connect posts to
            # `<name>.<base domain>`, which the portal's form-action allows).
            _, port = split_domain_port(request._get_raw_host())  # type: ignore[attr-defined]
            where = f"{request.scheme}://{primary}{':' + port if port else ''}"
            return HttpResponsePermanentRedirect(where + request.get_full_path())
        request.urlconf = WORKSPACE_URLCONF
        request.database = database  # type: ignore[attr-defined]
        return self.get_response(request)
