"""Partners' trial projects: production and two staging databases, a storage limit that every
growing action (duplicate, upload, restore, staging refresh) respects, on both engines; the
partner mailed at 80 % and 100 %; a refresh; the client's subscription taking the project."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.backups import restore, store
from tenantry.backups.models import Backup
from tenantry.billing import projects, quotas, subscriptions
from tenantry.billing.models import Plan
from tenantry.databases import lifecycle, members
from tenantry.databases.models import Database, Membership
from tenantry.engines import filestore
from tenantry.operations.sweep import sweep
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tenantry.workspace.releases import model
from tests.conftest import make_account
from tests.helpers import run_pending, signed_in


def partner_account() -> User:
    partner = make_account("partner@example.com")
    out = io.StringIO()
    call_command("partners", "add", partner.email, stdout=out)
    partner.refresh_from_db()
    assert out.getvalue() == f"{partner.email} is a partner: code {partner.partner_code}.\n"
    return partner


def staging(production: Database, name: str, partner: User) -> Database:
    lifecycle.start_duplicate(production, name, by=partner)
    run_pending()
    return Database.objects.get(name=name)


def test_only_partners_start_trial_projects(engine_kind: str, owner: User) -> None:
    with pytest.raises(ValidationError, match="Trial projects are for partners") as refused:
        projects.start_project("acme", by=owner)
    assert refused.value.code == "forbidden"
    partner = partner_account()
    with pytest.raises(CommandError, match="is already a partner"):
        call_command("partners", "add", partner.email)
    with pytest.raises(CommandError, match="There is no account nobody@example.com"):
        call_command("partners", "add", "nobody@example.com")
    out = io.StringIO()
    call_command("partners", "list", stdout=out)
    assert out.getvalue() == f"{partner.email}\t{partner.partner_code}\n"


def test_a_trial_project_keeps_to_its_storage_whatever_grows_it(
    engine_kind: str, monkeypatch: pytest.MonkeyPatch, mailoutbox: list
) -> None:
    partner = partner_account()
    project = projects.start_project("acme", by=partner)
    production = project.production
    assert production is not None and production.project == project
    size = quotas.measure(production)
    assert size > 0  # measured from the engine
    # Room for production and one staging copy, 80 % of the limit then.
    monkeypatch.setattr(quotas, "PROJECT_BYTES", size * 5 // 2)

    first = staging(production, "acme-staging", partner)
    assert (first.project, first.expires_at, first.is_test_copy) == (project, None, True)
    with tenant.using(first) as db:
        assert not ws.MailServer.objects.using(db).get().active
    assert [m.subject for m in mailoutbox] == [
        "[Tenantry] Your trial project “acme” uses 80 % of its storage"
    ]
    with pytest.raises(ValidationError) as refused:
        lifecycle.start_duplicate(production, "acme-staging-2", by=partner)
    assert refused.value.code == "limit"
    (sentence,) = refused.value.messages
    assert sentence.startswith("This staging database would need ")
    assert "the trial project “acme” uses " in sentence and " of its " in sentence
    assert not Database.objects.filter(name="acme-staging-2").exists()

    # An upload in the workspace past what is left: refused, nothing stored.
    left = quotas.PROJECT_BYTES - quotas.usage(production)[0]
    client = signed_in(production, partner)
    big = SimpleUploadedFile("big.bin", b"x" * (left + 1))
    page = client.post("/attachments/", {"file": big}).content.decode()
    assert "“big.bin” would need" in page and "the trial project “acme” uses" in page
    with tenant.using(production) as db:
        assert not ws.Attachment.objects.using(db).exists()
    small = SimpleUploadedFile("small.bin", b"y" * (left // 2))
    assert client.post("/attachments/", {"file": small}).status_code == 302
    production.refresh_from_db()
    assert production.size_bytes >= size + left // 2  # the files count, measured

    # Over the limit (it shrank): a restore over production and a refresh are refused too.
    monkeypatch.setattr(quotas, "PROJECT_BYTES", quotas.usage(production)[0] // 2)
    backup = store.make(production, Backup.Kind.DAILY)
    with pytest.raises(ValidationError, match="This restore would need"):
        restore.start(backup, production, by=partner)
    with pytest.raises(ValidationError, match="This refresh would need|uses"):
        projects.start_refresh(first, by=partner)
    production.refresh_from_db()
    quotas.measure(production)
    assert len(mailoutbox) == 2  # past 100 % now
    assert "are refused" in mailoutbox[-1].body


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_a_refresh_replaces_staging_with_production_neutralized_again(engine_kind: str) -> None:
    partner = partner_account()
    production = projects.start_project("acme", by=partner).production
    assert production is not None
    first = staging(production, "acme-staging", partner)
    contact = model(production.release, "Contact")
    with tenant.using(first) as db:
        contact.objects.using(db).create(name="only in staging")
    with tenant.using(production) as db:
        contact.objects.using(db).create(name="Ada, in production")
        ws.Mail.objects.using(db).create(to="a@example.com", subject="queued", body=".")
    uuid, physical = first.uuid, first.physical_name

    operation = projects.start_refresh(first, by=partner)
    run_pending()
    operation.refresh_from_db()
    assert operation.state == "done", operation.error
    first.refresh_from_db()
    assert first.uuid == uuid and first.physical_name != physical  # swapped in, same identity
    with tenant.using(first) as db:
        names = list(contact.objects.using(db).values_list("name", flat=True))
        assert names == ["Ada, in production"]
        assert ws.Mail.objects.using(db).get().state == "held"
        assert ws.Settings.objects.using(db).get().uuid == uuid
    with pytest.raises(ValidationError, match="is not a staging database"):
        projects.start_refresh(production, by=partner)

    staging(production, "acme-staging-2", partner)
    with pytest.raises(ValidationError, match="2 staging databases at most"):
        lifecycle.start_duplicate(production, "acme-staging-3", by=partner)


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_the_client_s_subscription_takes_the_project_over(engine_kind: str) -> None:
    partner = partner_account()
    client = make_account("client@example.com")
    production = projects.start_project("acme", by=partner).production
    assert production is not None
    staging(production, "acme-staging", partner)
    staging(production, "acme-staging-2", partner)
    plan = Plan.objects.create(
        name="Standard", price_month=10, price_year=100, storage_bytes=10 * 1024**3,
        max_databases=3,
    )  # fmt: skip
    subscription = subscriptions.subscribe(client, plan, users=5, by=client)
    with pytest.raises(ValidationError, match="that its owner is an administrator of “acme”"):
        subscriptions.link(subscription, production, by=partner)
    Membership.objects.create(database=production, user=client, role=Membership.Role.ADMIN)
    subscriptions.link(subscription, production, by=partner)  # the partner, the client's code

    production.refresh_from_db()
    assert production.subscription_code == subscription.code and not production.is_trial
    used, limit = quotas.usage(production)
    assert limit == plan.storage_bytes and used > 0  # the plan's limit now, staging included
    assert quotas.usage(Database.objects.get(name="acme-staging")) == (used, limit)
    staging(production, "acme-staging-3", partner)  # no more the partner's two


@pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)
def test_what_the_review_found_stays_fixed(
    engine_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    partner = partner_account()
    client = make_account("client@example.com")
    production = projects.start_project("acme", by=partner).production
    assert production is not None
    first = staging(production, "acme-staging", partner)

    # A restore is weighed by what its ZIP unpacks to, not by the ZIP.
    with tenant.using(production) as db:
        sha256, size = filestore.store(production.physical_name, [b"\0" * 3_000_000])  # packs small
        ws.Attachment.objects.using(db).create(name="zeros", sha256=sha256, size=size)
    quotas.measure(production)
    backup = store.make(production, Backup.Kind.DAILY)
    assert backup.size < 1_000_000
    with tenant.using(production) as db:
        ws.Attachment.objects.using(db).all().delete()
    filestore.remove(production.physical_name)
    quotas.measure(production)
    monkeypatch.setattr(quotas, "PROJECT_BYTES", quotas.usage(production)[0] + 1_000_000)
    with pytest.raises(ValidationError, match="This restore would need"):
        restore.start(backup, production, by=partner)
    monkeypatch.setattr(quotas, "PROJECT_BYTES", 1024**3)

    # A copy being made counts its source's size at once.
    lifecycle.start_duplicate(production, "acme-staging-2", by=partner)
    assert Database.objects.get(name="acme-staging-2").size_bytes == production.size_bytes
    run_pending()

    # Staging databases share their production's fate: expired with it, live again with it.
    assert production.expires_at is not None
    sweep(production.expires_at + timedelta(minutes=1))
    first.refresh_from_db()
    assert first.is_expired
    with pytest.raises(ValidationError, match="has expired"):
        projects.start_refresh(first, by=partner)
    plan = Plan.objects.create(
        name="Standard", price_month=10, price_year=100, storage_bytes=10 * 1024**3,
        max_databases=3,
    )  # fmt: skip
    subscription = subscriptions.subscribe(client, plan, users=3, by=client)
    Membership.objects.create(database=production, user=client, role=Membership.Role.ADMIN)
    subscriptions.link(subscription, production, by=client)
    first.refresh_from_db()
    assert not first.is_expired

    # The users of staging databases count against the subscription that pays for them.
    with pytest.raises(ValidationError, match="pays for 3 users and 2 are taken") as refused:
        members.invite(first, ["a@example.com", "b@example.com"], "user", by=partner)
    assert refused.value.code == "limit"

    # A partner the client removed from production makes plain copies, not staging ones.
    Membership.objects.filter(database=production, user=partner).delete()
    lifecycle.start_duplicate(first, "outside", by=partner)
    outside = Database.objects.get(name="outside")
    assert outside.project is None and outside.expires_at is not None
    assert timezone.now() < outside.expires_at
