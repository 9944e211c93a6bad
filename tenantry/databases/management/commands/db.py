from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError
from django.template.defaultfilters import filesizeformat

from tenantry.accounts.models import User
from tenantry.backups import archive
from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.base import EngineError
from tenantry.operations.models import OperationBusy
from tenantry.operations.progress import run_in_terminal


def find(name: str) -> Database:
    database = Database.objects.filter(name=name).first()
    if database is None:
        raise CommandError(f"There is no database named {name}.")
    return database


class Command(BaseCommand):
    help = "Manage databases as an operator: list, create, duplicate, backup, rename, delete."

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
        backup.add_argument("-o", "--output", help="the ZIP file (default: NAME_DATE.zip here)")
        rename = sub.add_parser("rename", help="rename a database")
        rename.add_argument("name")
        rename.add_argument("new_name")
        delete = sub.add_parser("delete", help="delete a database, at once and for good")
        delete.add_argument("name")
        delete.add_argument("--yes", action="store_true", help="confirm the deletion")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except (ValidationError, OperationBusy, EngineError, IntegrityError) as error:
            messages = error.messages if isinstance(error, ValidationError) else [str(error)]
            if isinstance(error, IntegrityError):
                messages = ["That name is already taken."]
            raise CommandError(" ".join(messages))

    def do_list(self, account: str | None = None, **options: Any) -> None:
        databases = Database.objects.exclude(name=None).select_related("server", "created_by")
        if account:
            databases = databases.filter(memberships__user__email__iexact=account)
        for d in databases:
            where = d.server.name if d.server else "sqlite"
            self.stdout.write(
                f"{d.name}\t{where}\t{d.release}\t{d.status_label}\t{filesizeformat(d.size_bytes)}"
            )

    def do_create(self, name: str, owner: str, **options: Any) -> None:
        user = User.objects.filter(email__iexact=owner, is_active=True).first()
        if user is None:
            raise CommandError(f"There is no account with the email {owner}.")
        database = Database.create_for(user, name)
        self.stdout.write(f"Created {database.name} at {database.url}.")

    def do_duplicate(self, name: str, new_name: str, live: bool, **options: Any) -> None:
        operation = lifecycle.start_duplicate(find(name), new_name, for_testing=not live)
        run_in_terminal(operation, self.stdout)
        self.stdout.write(f"Duplicated {name} as {new_name}.")

    def do_backup(self, name: str, output: str | None, **options: Any) -> None:
        database = find(name)
        path = Path(output or archive.filename(database))
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as f:
                for chunk in archive.stream(database):
                    f.write(chunk)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Cannot write {path}: {error.strerror}.")
        partial.rename(path)
        self.stdout.write(f"Wrote the backup of {name} to {path}.")

    def do_rename(self, name: str, new_name: str, **options: Any) -> None:
        find(name).rename(new_name)
        self.stdout.write(f"Renamed {name} to {new_name}.")

    def do_delete(self, name: str, yes: bool, **options: Any) -> None:
        database = find(name)
        if not yes:
            raise CommandError(f"Deleting {name} is permanent: add --yes to confirm.")
        run_in_terminal(lifecycle.start_delete(database), self.stdout)
        self.stdout.write(f"Deleted {name}.")
