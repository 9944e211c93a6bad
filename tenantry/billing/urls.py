from __future__ import annotations

from django.urls import path

from tenantry.billing import views

urlpatterns = [
    path("subscriptions/", views.subscriptions_list, name="subscriptions"),
    # Before the codes: no code is "new" (see Subscription.new_code).
    path("subscriptions/new/", views.subscribe, name="subscribe"),
    path("subscriptions/<str:code>/", views.subscription, name="subscription"),
    path("subscriptions/<str:code>/cancel/", views.cancel, name="subscription_cancel"),
    path("projects/<int:project_id>/", views.project, name="project"),
]
