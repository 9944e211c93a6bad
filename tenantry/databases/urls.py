from __future__ import annotations

from django.urls import path

from tenantry.databases import views

urlpatterns = [
    path("databases/", views.manager, name="databases"),
    path("databases/<str:name>/connect/", views.connect, name="database_connect"),
    path("databases/<str:name>/duplicate/", views.duplicate, name="database_duplicate"),
    path("databases/<str:name>/download/", views.download, name="database_download"),
    path("databases/<str:name>/rename/", views.rename, name="database_rename"),
    path("databases/<str:name>/delete/", views.delete, name="database_delete"),
    path("databases/<str:name>/users/", views.users, name="database_users"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("operations/<int:operation_id>/", views.operation, name="operation"),
]
