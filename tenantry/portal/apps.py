from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class PortalConfig(AppConfig):
    name = "tenantry.portal"
    label = "portal"


class StaffAdminConfig(admin_apps.AdminConfig):
    """Django's admin with its site in portal/admin.py (re-authentication, as the desk)."""

    default = False  # named in INSTALLED_APPS; the portal's app is PortalConfig
    default_site = "tenantry.portal.admin.StaffSite"
