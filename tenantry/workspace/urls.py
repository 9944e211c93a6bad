"""The workspace app's pages, served on each database's own host (see gateway)."""

from __future__ import annotations

from django.urls import path

from tenantry.workspace import views

urlpatterns = [
    path("", views.home, name="ws_home"),
    path("login/", views.sign_in, name="ws_login"),
    path("login/code/", views.code, name="ws_code"),
    path("logout/", views.sign_out, name="ws_logout"),
    path("connect/", views.connect, name="ws_connect"),
    path("contacts/", views.contacts, name="ws_contacts"),
    path("contacts/<int:pk>/", views.contact, name="ws_contact"),
    path("companies/", views.companies, name="ws_companies"),
    path("attachments/", views.attachments, name="ws_attachments"),
    path("attachments/<int:pk>/", views.attachment, name="ws_attachment"),
    path("preferences/", views.preferences, name="ws_preferences"),
    path("users/", views.users, name="ws_users"),
    path("mail/", views.outgoing_mail, name="ws_mail"),
]
