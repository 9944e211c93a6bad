from __future__ import annotations

from django.urls import path

from tenantry.accounts import views

urlpatterns = [
    path("", views.account_info, name="account_info"),
    path("email/", views.email_change, name="account_email_change"),
    path("email/confirm/", views.email_confirm, name="account_email_confirm"),
    path("security/", views.security, name="account_security"),
    path("security/logout-all/", views.logout_all, name="account_logout_all"),
    path("security/developer-mode/", views.developer_mode, name="account_developer_mode"),
    path("security/api-keys/new/", views.apikey_create, name="account_apikey_create"),
    path(
        "security/api-keys/<int:key_id>/revoke/", views.apikey_revoke, name="account_apikey_revoke"
    ),
    path("delete/", views.delete_account, name="account_delete"),
]
