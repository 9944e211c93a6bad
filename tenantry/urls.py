from __future__ import annotations

from allauth.account import views as account_views
from allauth.mfa.base import views as mfa_views
from allauth.mfa.totp import views as totp_views
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import RedirectView

from tenantry.domains import views as domain_views
from tenantry.portal import views as portal

urlpatterns = [
    path("", portal.home, name="home"),
    # The operator's pages (plans, subscriptions, invoices): staff accounts, signed in
    # through the portal's own sign-in (2FA included), never the admin's form.
    path("admin/login/", portal.admin_login),
    path("admin/", admin.site.urls),
    # Caddy's on-demand TLS (TENANTRY_TLS_ASK_FROM only).
    path("internal/tls/ask", domain_views.tls_ask),
    path("", include("tenantry.databases.urls")),
    path("", include("tenantry.billing.urls")),
    path("", include("tenantry.support.urls")),
    path("account/", include("tenantry.accounts.urls")),
    # The account email changes on the Account information page, verified by a code; allauth's
    # own address book (several addresses, link verification) is not offered.
    path(
        "accounts/email/", RedirectView.as_view(pattern_name="account_info"), name="account_email"
    ),
    # allauth's views that take a password or a code without marking it sensitive: an error
    # report would show it.
    *[
        path(route, sensitive_post_parameters(field)(view), name=name)
        for route, field, view, name in [
            (
                "accounts/reauthenticate/",
                "password",
                account_views.reauthenticate,
                "account_reauthenticate",
            ),
            ("accounts/2fa/authenticate/", "code", mfa_views.authenticate, "mfa_authenticate"),
            (
                "accounts/2fa/reauthenticate/",
                "code",
                mfa_views.reauthenticate,
                "mfa_reauthenticate",
            ),
            ("accounts/2fa/totp/activate/", "code", totp_views.activate_totp, "mfa_activate_totp"),
        ]
    ],  # fmt: skip
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("tenantry.api.urls")),
]

if settings.BENCH:
    urlpatterns.append(path("bench/ping", portal.ping))
