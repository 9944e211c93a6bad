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
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat

from tenantry.billing.models import Project, Subscription
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
        return Scope(
            f"the subscription {subscription.code}",
            paid_by([subscription.pk]),
            subscription.plan.storage_bytes,
        )
    if project is not None:
        name = project.production.name if project.production else ""
        return Scope(f"the trial project “{name}”", Q(project=project), PROJECT_BYTES, project)
    return None


def paid_by(subscriptions: list[int]) -> Q:
    """The databases these subscriptions pay for: those linked, and the trial projects'
    whose production is linked."""
    return Q(subscription__in=subscriptions) | Q(
        project__production__subscription__in=subscriptions
    )


def usage(database: Database) -> tuple[int, int | None]:
    """Bytes used by what shares the database's limit, and the limit (None: none)."""
    return usages([database]).get(database.pk, (database.size_bytes, None))


def usages(databases: list[Database]) -> dict[int, tuple[int, int]]:
    """The bytes used and the limit of each database that has a limit (as scope() counts
    them), in four queries however many databases: for a page of them."""
    project_ids = {d.project_id for d in databases if d.project_id is not None}  # type: ignore[attr-defined]
    paying: dict[int, int] = dict(  # a project whose production is paid for: by which
        Project.objects.filter(pk__in=project_ids)
        .exclude(production__subscription=None)
        .values_list("pk", "production__subscription")
    )
    keys: dict[int, tuple[str, int]] = {}
    for database in databases:
        project_id = database.project_id  # type: ignore[attr-defined]
        subscription_id = (project_id and paying.get(project_id)) or database.subscription_id  # type: ignore[attr-defined]
        if subscription_id is not None:
            keys[database.pk] = ("subscription", subscription_id)
        elif project_id is not None:
            keys[database.pk] = ("project", project_id)
    subscription_ids = [k for kind, k in keys.values() if kind == "subscription"]
    trial_ids = [k for kind, k in keys.values() if kind == "project"]
    live = Database.objects.exclude(name=None).order_by()
    totals: dict[tuple[str, int], int] = {}
    if subscription_ids:
        paid = live.filter(paid_by(subscription_ids)).annotate(
            key=Coalesce("project__production__subscription", "subscription")
        )
        for key, total in paid.values_list("key").annotate(total=Sum("size_bytes")):
            totals["subscription", key] = total
    if trial_ids:
        for key, total in (
            live.filter(project__in=trial_ids)
            .values_list("project")
            .annotate(total=Sum("size_bytes"))
        ):
            totals["project", key] = total
    limits = {
        ("subscription", pk): limit
        for pk, limit in Subscription.objects.filter(pk__in=subscription_ids).values_list(
            "pk", "plan__storage_bytes"
        )
    }
    return {pk: (totals.get(key, 0), limits.get(key, PROJECT_BYTES)) for pk, key in keys.items()}


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
