from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404
from django.template.defaultfilters import filesizeformat

from tenantry.accounts.models import User
from tenantry.backups import archive, restore
from tenantry.backups.models import Backup
from tenantry.databases import activity, lifecycle, members
from tenantry.databases.models import Activity, Database, normalize_name
from tenantry.domains import verbs as domains
from tenantry.domains.models import Domain
from tenantry.engines.base import EngineError
from tenantry.operations.models import Operation
from tenantry.operations.progress import run_in_terminal
from tenantry.releases import upgrade
from tenantry.releases.models import Published, Upgrade


def _domain(database: Database, typed: str) -> Domain:
    name = domains.normalize(typed)
    found = database.domains.filter(name=name).first()  # type: ignore[attr-defined]
    if found is None:
        raise CommandError(f"{database.name} has no domain {typed}.")
    return found  # type: ignore[no-any-return]


def find(name: str) -> Database:
    database = Database.objects.filter(name=name).first()
    if database is None:
        raise CommandError(f"There is no database named {name}.")
    return database


class Command(BaseCommand):
    # The system checks import every URL and view (~0.4 s): a command a person types answers
    # without them (serve, web, worker and `tenantry check` run them).
    requires_system_checks: list[str] = []
    help = (
        "Manage databases as an operator: list, create, duplicate, backup, backups, restore, "
        "rename, delete, upgrade, users, invite, remove-user, activity."
    )

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="every database, or one account's")
        listing.add_argument("--account", help="only the databases of this account email")
        create = sub.add_parser("create", help="create a database for an account")
        create.add_argument("name")
        create.add_argument("--owner", required=True, help="the administrator's account email")
        duplicate = sub.add_parser("duplicate", help="copy a database (neutralized by default)")
        duplicate.add_argument("name")
        duplicate.add_argument("new_name")
        duplicate.add_argument(
            "--live", action="store_true", help="keep mail, payments and jobs on in the copy"
        )
        backup = sub.add_parser("backup", help="write a database's backup ZIP")
        backup.add_argument("name")
        backup.add_argument(
            "-o", "--output", help="the ZIP file or its folder (default: NAME_DATE.zip here)"
        )
        backups = sub.add_parser("backups", help="a database's stored backups")
        backups.add_argument("name")
        restore = sub.add_parser(
            "restore", help="restore a backup into a new database, or over one (--replace)"
        )
        restore.add_argument("name", help="the database to make, or to restore over")
        source = restore.add_mutually_exclusive_group(required=True)
        source.add_argument("--file", help="a backup ZIP")
        source.add_argument("--backup", type=int, help="the id of a stored backup")
        restore.add_argument(
            "--replace", action="store_true", help="restore over NAME, after a backup of it"
        )
        restore.add_argument("--owner", help="the new database's administrator (account email)")
        restore.add_argument(
            "--moved", action="store_true", help="keep the backup's identity (default: a copy)"
        )
        restore.add_argument(
            "--neutralize", action="store_true", help="turn off mail, payments and jobs"
        )
        upgrading = sub.add_parser(
            "upgrade", help="upgrade a database to a newer release, or test it on a copy"
        )
        upgrading.add_argument("name")
        upgrading.add_argument("--release", help="the release (default: the latest published)")
        upgrading.add_argument(
            "--test", action="store_true", help="upgrade a neutralized test copy instead"
        )
        rename = sub.add_parser("rename", help="rename a database")
        rename.add_argument("name")
        rename.add_argument("new_name")
        users = sub.add_parser("users", help="a database's users and pending invitations")
        users.add_argument("name")
        invite = sub.add_parser("invite", help="invite people by email (they get a link)")
        invite.add_argument("name")
        invite.add_argument("emails", nargs="+")
        invite.add_argument("--role", choices=["user", "admin"], default="user")
        invite.add_argument("--by", required=True, help="the inviting administrator's email")
        remove = sub.add_parser("remove-user", help="remove a user (or cancel an invitation)")
        remove.add_argument("name")
        remove.add_argument("email")
        delete = sub.add_parser("delete", help="delete a database, at once and for good")
        delete.add_argument("name")
        delete.add_argument("--yes", action="store_true", help="confirm the deletion")
        listed = sub.add_parser("domains", help="a database's custom domains and their state")
        listed.add_argument("name")
        for verb, text in (
            ("domain-add", "add a custom domain (then add its DNS record)"),
            ("domain-remove", "remove a custom domain"),
            ("domain-verify", "check a custom domain's DNS records now"),
        ):
            action = sub.add_parser(verb, help=text)
            action.add_argument("name")
            action.add_argument("domain")
        log = sub.add_parser("activity", help="who did what to a database, newest first")
        log.add_argument("name", help="a database's name, or the uuid of a deleted one")
        log.add_argument("--kind", choices=Activity.Kind.values, help="only this kind of action")
        log.add_argument("--limit", type=int, default=50, help="how many entries (default 50)")

    def handle(self, *, action: str, **options: Any) -> None:
        for key in ("name", "new_name"):  # the names the API and the portal would make
            if options.get(key) is not None:
                options[key] = normalize_name(options[key])
        try:
            getattr(self, f"do_{action.replace('-', '_')}")(**options)
        except (ValidationError, EngineError) as error:  # a refusal, or a storage failure
            messages = error.messages if isinstance(error, ValidationError) else [str(error)]
            raise CommandError(" ".join(messages))

    def do_domains(self, name: str, **options: Any) -> None:
        database = find(name)
        for domain in database.domains.all():  # type: ignore[attr-defined]
            primary = "\tprimary" if domain.primary else ""
            why = f"\t{domain.reason}" if domain.reason else ""
            self.stdout.write(f"{domain.display}\t{domain.state}{primary}{why}")

    def do_domain_add(self, name: str, domain: str, **options: Any) -> None:
        database = find(name)
        added = domains.add(database, domain, by=None)
        self.stdout.write(
            f"{added.display} added to {database.name}. Add one DNS record, then "
            f"`tenantry db domain-verify {database.name} {added.display}`:\n"
            f"  {added.name}. CNAME {domains.target(database)}.\n"
            f'  or, for an apex domain: {domains.CHALLENGE}.{added.name}. TXT "{added.token}"'
        )

    def do_domain_remove(self, name: str, domain: str, **options: Any) -> None:
        found = _domain(find(name), domain)
        domains.remove(found, by=None)
        self.stdout.write(f"{found.display} removed from {name}.")

    def do_domain_verify(self, name: str, domain: str, **options: Any) -> None:
        found = domains.verify(_domain(find(name), domain))
        if found.state != Domain.State.VERIFIED:
            raise CommandError(f"{found.display} is {found.state}: {found.reason}.")
        self.stdout.write(f"{found.display} is verified.")

    def do_list(self, account: str | None = None, **options: Any) -> None:
        databases = Database.objects.exclude(name=None).select_related("server", "created_by")
        if account:
            databases = databases.filter(memberships__user__email__iexact=account)
        published = Published()  # read once for the whole list
        for d in databases:
            where = d.server.name if d.server else "sqlite"
            line = (
                f"{d.name}\t{where}\t{d.release}\t{d.status_label}\t{filesizeformat(d.size_bytes)}"
            )
            notes = []
            upgrade_to, deadline = upgrade.offer(d, published)
            if upgrade_to:
                notes.append(
                    f"upgrade to {upgrade_to}" + (f" by {deadline:%Y-%m-%d}" if deadline else "")
                )
            if d.upgrade_failed_at:
                notes.append("automatic upgrade failed")
            self.stdout.write(line + ("\t" + "; ".join(notes) if notes else ""))

    def do_users(self, name: str, **options: Any) -> None:
        for row in members.listing(find(name)):
            self.stdout.write(f"{row['email']}\t{row['role']}\t{row['status']}")

    def do_invite(self, name: str, emails: list[str], role: str, by: str, **options: Any) -> None:
        database = find(name)
        admin = User.objects.filter(
            email__iexact=by, memberships__database=database, memberships__role="admin"
        ).first()
        if admin is None:
            raise CommandError(f"{by} is not an administrator of {name}.")
        sent = members.invite(database, members.parse_emails(" ".join(emails)), role, by=admin)
        self.stdout.write(f"Invitation sent to {', '.join(i.email for i in sent)}.")

    def do_remove_user(self, name: str, email: str, **options: Any) -> None:
        try:
            self.stdout.write(members.remove_email(find(name), email, by=None))
        except Http404 as error:
            raise CommandError(str(error))

    def do_create(self, name: str, owner: str, **options: Any) -> None:
        user = User.objects.filter(email__iexact=owner, is_active=True).first()
        if user is None:
            raise CommandError(f"There is no account with the email {owner}.")
        database = lifecycle.create(name, by=user)
        self.stdout.write(f"Created {database.name} at {database.url}.")

    def do_duplicate(self, name: str, new_name: str, live: bool, **options: Any) -> None:
        operation = lifecycle.start_duplicate(find(name), new_name, for_testing=not live, by=None)
        run_in_terminal(operation, self.stdout)
        self.stdout.write(f"Duplicated {name} as {new_name}.")

    def do_backup(self, name: str, output: str | None, **options: Any) -> None:
        database = find(name)
        path = Path(output or archive.filename(database))
        if path.is_dir():  # as cp does: into the folder, under the backup's own name
            path = path / archive.filename(database)
        partial = path.with_name(path.name + ".partial")
        activity.record(database, activity.Kind.DOWNLOAD, by=None, detail=f"to {path}")
        try:
            with partial.open("wb") as f:
                for chunk in archive.stream(database):
                    f.write(chunk)
            partial.rename(path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Cannot write {path}: {error.strerror}.")
        self.stdout.write(f"Wrote the backup of {name} to {path}.")

    def do_backups(self, name: str, **options: Any) -> None:
        database = find(name)
        for b in database.backups.stored():  # type: ignore[attr-defined]
            when = f"{b.created_at:%Y-%m-%d %H:%M}"
            self.stdout.write(f"{b.pk}\t{when}\t{b.kind}\t{b.release}\t{filesizeformat(b.size)}")

    def do_restore(
        self,
        name: str,
        file: str | None,
        backup: int | None,
        replace: bool,
        owner: str | None,
        moved: bool,
        neutralize: bool,
        **options: Any,
    ) -> None:
        target: Database | str = find(name) if replace else name
        by = None
        if not replace:
            by = User.objects.filter(email__iexact=owner or "", is_active=True).first()
            if by is None:
                raise CommandError("A new database needs an administrator: --owner EMAIL.")
        if file is not None:
            try:
                with open(file, "rb") as f:
                    source = restore.keep_upload(File(f), by)  # type: ignore[arg-type]
            except OSError as error:
                raise CommandError(f"Cannot read {file}: {error.strerror}.")
        else:
            # Never an upload: it is someone's restore under way, and no stored backup.
            source = Backup.objects.stored().filter(pk=backup or 0).first()  # type: ignore[assignment]
            if source is None:
                raise CommandError(f"There is no stored backup {backup}.")
        operation = restore.start(source, target, by=by, as_copy=not moved, neutralize=neutralize)
        run_in_terminal(operation, self.stdout)
        self.stdout.write(f"Restored {name}.")

    def do_upgrade(self, name: str, release: str | None, test: bool, **options: Any) -> None:
        operation = upgrade.start(find(name), release, test=test, by=None)
        try:
            run_in_terminal(operation, self.stdout)
        except CommandError:  # a failed upgrade's report too: its steps, where to read more
            self.write_report(operation)
            raise
        self.write_report(operation)

    def write_report(self, operation: Operation) -> None:
        report = Upgrade.objects.select_related("copy").filter(operation=operation).first()
        if report is None:
            return
        duration = f" in {report.duration.total_seconds():.1f} s" if report.duration else ""
        self.stdout.write(f"{report}: {report.state}{duration}.")
        self.stdout.write(f"Steps: {', '.join(report.steps) or 'none'}.")
        if report.state == Upgrade.State.SUCCEEDED:
            self.stdout.write("Rows per table (before → after):")
            for row in report.tables:
                before, after = (row.get(k) for k in ("before", "after"))
                self.stdout.write(
                    f"  {row['table']}: {'-' if before is None else before} → "
                    f"{'-' if after is None else after}"
                )
            if report.copy is not None:
                self.stdout.write(f"Test copy: {report.copy.name} at {report.copy.url}")
        self.stdout.write(f"Report: {settings.PORTAL_URL}/upgrades/{report.pk}/")

    def do_rename(self, name: str, new_name: str, **options: Any) -> None:
        lifecycle.rename(find(name), new_name, by=None)
        self.stdout.write(f"Renamed {name} to {new_name}.")

    def do_delete(self, name: str, yes: bool, **options: Any) -> None:
        database = find(name)
        if not yes:
            raise CommandError(f"Deleting {name} is permanent: add --yes to confirm.")
        run_in_terminal(lifecycle.start_delete(database, by=None), self.stdout)
        self.stdout.write(f"Deleted {name}.")

    def do_activity(self, name: str, kind: str | None, limit: int, **options: Any) -> None:
        database = Database.objects.filter(name=name).first()
        entries = Activity.objects.filter(database=database) if database else None
        if entries is None:
            try:
                entries = Activity.objects.filter(database_uuid=uuid.UUID(name))
            except ValueError:
                raise CommandError(f"There is no database named {name}.")
        if kind:
            entries = entries.filter(kind=kind)
        for e in entries[:limit]:
            result = f"{e.result}: {e.reason}" if e.reason else e.result
            line = [f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.actor, e.channel, e.ip or "-"]
            self.stdout.write("\t".join([*line, e.kind, e.detail or "-", result]))
