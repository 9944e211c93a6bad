from __future__ import annotations

from django.urls import include, path
from django.views.generic import RedirectView

from tenantry.portal import views as portal

urlpatterns = [
    path("", portal.home, name="home"),
    path("", include("tenantry.databases.urls")),
    path("subscriptions/", portal.subscriptions, name="subscriptions"),
    path("account/", include("tenantry.accounts.urls")),
    # The account email changes on the Account information page, verified by a code; allauth's
    # own address book (several addresses, link verification) is not offered.
    path(
        "accounts/email/", RedirectView.as_view(pattern_name="account_info"), name="account_email"
    ),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("tenantry.api.urls")),
]
