"""The API's URLs: ninja's, answering in JSON where ninja would leave it to Django's pages."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path, re_path

from tenantry.api.views import api, json_not_allowed, not_found

# Not named app_name: include() would take this module's for a namespace.
ninja_patterns, ninja_app, ninja_namespace = api.urls


def answering_405_in_json(pattern: URLPattern | URLResolver) -> URLPattern:
    assert isinstance(pattern, URLPattern), "the API has no nested routers"
    view = json_not_allowed(pattern.callback)
    return URLPattern(pattern.pattern, view, pattern.default_args, pattern.name)


urlpatterns = [
    # The API's root (ninja's raises Django's HTML 404) and, last, every path it does not have.
    path("", not_found),
    path(
        "",
        include(
            ([answering_405_in_json(p) for p in ninja_patterns], ninja_app),
            namespace=ninja_namespace,
        ),
    ),
    re_path("", not_found),
]
