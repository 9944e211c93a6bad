from __future__ import annotations

from django.urls import path

from tenantry.databases import views
from tenantry.domains import views as domain_views

urlpatterns = [
    path("databases/", views.manager, name="databases"),
    path("databases/restore/", views.restore_new, name="restore"),
    path("databases/deleted/", views.deleted_activity, name="deleted_activity"),
    path("databases/<str:name>/connect/", views.connect, name="database_connect"),
    path("databases/<str:name>/duplicate/", views.duplicate, name="database_duplicate"),
    path("databases/<str:name>/download/", views.download, name="database_download"),
    path("databases/<str:name>/backups/", views.backups, name="database_backups"),
    path(
        "databases/<str:name>/backups/<int:backup_id>/download/",
        views.backup_download,
        name="backup_download",
    ),
    path("databases/<str:name>/restore/", views.restore_over, name="database_restore"),
    path("databases/<str:name>/upgrade/", views.upgrade_database, name="database_upgrade"),
    path("databases/<str:name>/rename/", views.rename, name="database_rename"),
    path("databases/<str:name>/delete/", views.delete, name="database_delete"),
    path("databases/<str:name>/users/", views.users, name="database_users"),
    path("databases/<str:name>/activity/", views.activity_log, name="database_activity"),
    path("databases/<str:name>/domains/", domain_views.domains, name="database_domains"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("operations/<int:operation_id>/", views.operation, name="operation"),
    path("upgrades/<int:upgrade_id>/", views.upgrade_report, name="upgrade_report"),
]
