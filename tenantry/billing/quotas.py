"""Storage limits: the bytes of databases and their files, measured from the engine and the
filestore, against the limit of what pays for them: a subscription's plan, or a partner's
trial project (1 GB) until a client's subscription takes it over.

Every action that grows a database asks `refuse_growth` first (duplicate, restore over it, a
staging refresh, an upload in the workspace) and `measure`s it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from allauth.account.adapter import get_adapter
from django.core.exceptions import ValidationError
from django.db.models import Q, Sum
from django.template.defaultfilters import filesizeformat

from tenantry.billing.models import Project
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.engines.fleet import engine_for

PROJECT_BYTES = 1024**3
MAX_STAGING = 2  # a trial project's copies of its production database
WARNINGS = (80, 100)  # percent of the limit at which a partner is mailed


@dataclass
class Scope:
    """Databases that share one limit."""

    label: str  # "the subscription M2611-4F7Q", "the trial project “acme”"
    databases: Q
    limit: int
    project: Project | None = None

    @property
    def used(self) -> int:
        found = Database.objects.filter(self.databases).exclude(name=None)
        return int(found.aggregate(total=Sum("size_bytes"))["total"] or 0)


def scope(database: Database) -> Scope | None:
    """The limit the database counts against, if any (a trial of its own has none)."""
    project = database.project
    subscription = database.subscription
    if project is not None and project.production is not None:
        # The production database's subscription takes its staging copies with it.
        subscription = project.production.subscription or subscription
    if subscription is not None:
        shared = Q(subscription=subscription)
        if project is not None:
            shared |= Q(project=project)
        return Scope(
            f"the subscription {subscription.code}", shared, subscription.plan.storage_bytes
        )
    if project is not None:
        name = project.production.name if project.production else ""
        return Scope(f"the trial project “{name}”", Q(project=project), PROJECT_BYTES, project)
    return None


def usage(database: Database) -> tuple[int, int | None]:
    """Bytes used by what shares the database's limit, and the limit (None: none)."""
    found = scope(database)
    if found is None:
        return database.size_bytes, None
    return found.used, found.limit


def refuse_growth(database: Database, growth: int, what: str) -> None:
    """Refuse `what` ("This copy") if it would take the limit past: with the usage and the
    limit in the sentence."""
    found = scope(database)
    if found is None:
        return
    used = found.used
    if used + growth > found.limit:
        raise ValidationError(
            f"{what} would need {filesizeformat(growth)} more: {found.label} uses "
            f"{filesizeformat(used)} of its {filesizeformat(found.limit)}. Free some space, or "
            "raise the limit with a subscription's plan.",
            code="limit",
        )


def refuse_copy(source: Database) -> None:
    """Before a copy of a project's database (a staging one, which joins the project): at most
    two while the partner's trial lasts, and within the limit."""
    project = source.project
    if project is None:
        return
    production = project.production
    if production is None or production.subscription_id is None:  # type: ignore[attr-defined]
        staging = project.databases.exclude(name=None).exclude(
            pk=source.pk if production is None else production.pk
        )  # type: ignore[attr-defined]
        if staging.count() >= MAX_STAGING:
            raise ValidationError(
                f"A trial project has {MAX_STAGING} staging databases at most: delete one "
                "first, or refresh it from production.",
                code="limit",
            )
    refuse_growth(source, source.size_bytes, "This staging database")


def measure(database: Database) -> int:
    """The database's bytes (engine and files) now, recorded; mails the partner of a trial
    project that passed 80 % or 100 % of its limit."""
    size = engine_for(database).size(database.physical_name) + filestore.size(
        database.physical_name
    )
    Database.objects.filter(pk=database.pk).update(size_bytes=size)
    database.size_bytes = size
    found = scope(database)
    if found is not None and found.project is not None:
        _warn(found)
    return size


def _warn(found: Scope) -> None:
    project = found.project
    assert project is not None
    percent = 100 * found.used // found.limit
    reached = max((w for w in WARNINGS if percent >= w), default=0)
    if reached > project.warned_percent:
        context = {"project": project, "scope": found, "percent": percent, "used": found.used}
        get_adapter().send_mail("billing/email/project_usage", project.partner.email, context)
    if reached != project.warned_percent:
        Project.objects.filter(pk=project.pk).update(warned_percent=reached)
