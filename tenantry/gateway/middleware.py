"""Routing by host: the portal's hosts reach the portal, `<name>.<BASE_DOMAIN>` reaches that
database's workspace app, and any other host a 404 in the portal's look."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseNotFound
from django.http.request import split_domain_port
from django.template.loader import render_to_string

from tenantry.gateway import sites

WORKSPACE_URLCONF = "tenantry.workspace.urls"
# A DNS label (at most 63 characters): anything else is no database's, and is turned away
# before it costs a lookup.
LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def database_name(host: str) -> str | None:
    """The database a host name points at, or None when it is no database's host."""
    suffix = "." + settings.BASE_DOMAIN
    if host.endswith(suffix):
        label = host[: -len(suffix)]
        if LABEL.fullmatch(label):
            return label
    return None


def portal_hosts() -> set[str]:
    # The exact names among ALLOWED_HOSTS; ".example.com" entries are the databases'.
    return {h for h in settings.ALLOWED_HOSTS if not h.startswith(".") and h != "*"}


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
        if name is None:
            return HttpResponseNotFound(page("workspace/not_found.html"))
        database = sites.lookup(name)
        if database is None:
            return HttpResponseNotFound(page("workspace/not_found.html", name=name))
        if database.is_expired:
            return HttpResponseForbidden(page("workspace/expired.html", database=database))
        request.urlconf = WORKSPACE_URLCONF
        request.database = database  # type: ignore[attr-defined]
        return self.get_response(request)
