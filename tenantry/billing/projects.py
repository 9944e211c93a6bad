"""Partners' trial projects: a production database and at most two staging databases
(neutralized copies of it, refreshed from it on demand), 1 GB in all (quotas.py).

A staging database is a copy of the production one made by the duplicate verb: a copy of a
project's database joins the project and does not expire. When a client's subscription pays
for the production database (link), the project counts against the client's plan instead, and
the partner's code no longer applies.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import transaction

from tenantry.accounts.models import User
from tenantry.billing import quotas
from tenantry.billing.models import Project
from tenantry.databases import activity, lifecycle, members
from tenantry.databases.models import Database
from tenantry.engines import filestore
from tenantry.engines.fleet import engine_for
from tenantry.operations.models import KINDS, Kind, Operation
from tenantry.workspace import tenant


def new_partner_code() -> str:
    return "P-" + secrets.token_hex(4).upper()


def start_project(name: str, *, by: User) -> Project:
    """A trial project of the partner `by`: its production database, made now."""
    if not by.partner_code:
        raise ValidationError(
            "Trial projects are for partners: this account has no partnership code.",
            code="forbidden",
        )
    database = lifecycle.create(name, by=by)
    with transaction.atomic():
        project = Project.objects.create(partner=by, production=database)
        database.project = project
        database.save(update_fields=["project"])
    return project


def start_refresh(staging: Database, *, by: User | None) -> Operation:
    """Replace a staging database's data and files with production's, neutralized again."""
    project = staging.project
    detail = "from production"
    with activity.refusals(staging, activity.Kind.RESTORE, by=by, detail=detail):
        if project is None or project.production is None or staging.pk == project.production_id:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{staging.name}” is not a staging database of a trial project.", code="invalid"
            )
        production = project.production
        production.refuse_if_expired()
        if staging.status != Database.Status.ACTIVE:
            raise ValidationError(f"“{staging.name}” is being changed.", code="busy")
        quotas.refuse_growth(
            staging, max(0, production.size_bytes - staging.size_bytes), "This refresh"
        )
        params = {"physical": lifecycle.new_physical_name(), "old": staging.physical_name}
        with transaction.atomic():
            operation = Operation.start("refresh", staging, by=by, params=params)
            activity.record(
                staging, activity.Kind.RESTORE, by=by, detail=detail,
                result=activity.Result.STARTED, operation=operation,
            )  # fmt: skip
        return operation


def run_refresh(operation: Operation) -> None:
    """Into a new physical database, swapped in at the end (as a restore): a failure leaves
    the staging database as it was."""
    staging, params = operation.database, operation.params
    if staging is None or staging.project is None or staging.project.production is None:
        raise ValidationError("The staging database or its production no longer exists.")
    production = staging.project.production
    engine = engine_for(staging)
    if staging.physical_name != params["physical"]:
        operation.advance(5, "Copying production")
        engine.drop(params["physical"])
        engine.clone(production.physical_name, params["physical"])
        operation.advance(60, "Copying the files")
        filestore.remove(params["physical"])
        filestore.copy(production.physical_name, params["physical"])
        operation.advance(80, "Neutralizing: mail, payments, carriers and jobs off")
        with tenant.using(staging, params["physical"]) as db:
            tenant.set_identity(db, staging.uuid, True, None)
            tenant.neutralize(db)
            # Production's users are the staging database's own again, as after a restore:
            # someone removed from it (or never in it) does not get in with production's data.
            members.link_members(db, staging)
        Database.objects.filter(pk=staging.pk).update(
            physical_name=params["physical"], release=production.release, is_test_copy=True
        )
        staging.refresh_from_db()
    operation.advance(95, "Removing the replaced copy")
    engine.drop(params["old"])
    filestore.remove(params["old"])
    quotas.measure(staging)


def undo_refresh(operation: Operation) -> None:
    staging = operation.database
    if staging is None:
        return
    staging.refresh_from_db()
    if staging.physical_name != operation.params["physical"]:  # not swapped: the new one goes
        engine_for(staging).drop(operation.params["physical"])
        filestore.remove(operation.params["physical"])
    project = staging.project
    if project is not None and project.production is not None:  # if a killed worker held it
        engine_for(project.production).release(project.production.physical_name)


KINDS["refresh"] = Kind("Refresh", run_refresh, undo_refresh)
