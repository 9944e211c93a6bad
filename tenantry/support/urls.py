from __future__ import annotations

from django.urls import path

from tenantry.support import views

urlpatterns = [
    path("support/", views.requests_list, name="support_requests"),
    path("support/new/", views.new_request, name="support_new"),
    path("support/<int:ticket_id>/", views.request_page, name="support_request"),
    path(
        "support/<int:ticket_id>/files/<int:attachment_id>/",
        views.request_file,
        name="support_file",
    ),
    path("desk/", views.desk, name="desk"),
    path("desk/<int:ticket_id>/", views.desk_request, name="desk_request"),
    path("desk/<int:ticket_id>/files/<int:attachment_id>/", views.desk_file, name="desk_file"),
]
