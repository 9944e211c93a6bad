from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat

from tenantry.databases import lifecycle
from tenantry.databases.models import Database
from tenantry.engines.base import EngineError
from tenantry.engines.fleet import place, server_engine
from tenantry.engines.models import GIB, Server
from tenantry.engines.postgresql import PostgreSQLEngine
from tenantry.operations.models import OperationBusy
from tenantry.operations.progress import run_in_terminal

MAX_CAPACITY_GB = 1_000_000  # a petabyte


class Command(BaseCommand):
    # The system checks import every URL and view (~0.4 s): a command a person types answers
    # without them (serve, web, worker and `tenantry check` run them).
    requires_system_checks: list[str] = []
    help = "Manage the fleet of PostgreSQL servers: add, list, drain."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a server by URL")
        add.add_argument("url", help="postgresql://user:password@host:port/postgres")
        add.add_argument("--name", help="a short name (default: host:port)")
        add.add_argument("--capacity-gb", type=int, default=100, help="room for databases")
        sub.add_parser("list", help="the servers with their databases and bytes")
        drain = sub.add_parser("drain", help="move every database off a server")
        drain.add_argument("name")

    def handle(self, *, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except (EngineError, OperationBusy) as error:
            raise CommandError(str(error))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages))

    def do_add(self, url: str, name: str | None, capacity_gb: int, **options: Any) -> None:
        try:
            parts = urlsplit(url)
            well_formed = parts.scheme in ("postgres", "postgresql") and bool(parts.hostname)
            parts.port  # noqa: B018 (raises ValueError for a port that is not one)
        except ValueError:
            well_formed = False
        if not well_formed:
            raise CommandError(
                "The URL must look like postgresql://user:password@host:5432/postgres."
            )
        if not 1 <= capacity_gb <= MAX_CAPACITY_GB:
            raise CommandError(f"The capacity must be from 1 to {MAX_CAPACITY_GB} GB.")
        engine = PostgreSQLEngine(url, name or "")
        engine.sizes()  # refuses a server that cannot be reached, with the reason
        if Server.objects.filter(name=engine.name).exists():
            raise CommandError(f"A server named {engine.name} is already registered.")
        server = Server(name=engine.name, capacity_bytes=capacity_gb * GIB)
        server.url = url
        server.save()
        self.stdout.write(f"Added {server.name}: new databases may now be placed on it.")

    def do_list(self, **options: Any) -> None:
        for server in Server.objects.all():
            ours = set(server.databases.values_list("physical_name", flat=True))
            sizes = server_engine(server).sizes()
            used = sum(size for name, size in sizes.items() if name in ours)
            state = " (draining)" if server.draining else ""
            self.stdout.write(
                f"{server.name}{state}\t{server.safe_url}\t{len(ours)} databases\t"
                f"{filesizeformat(used)} of {filesizeformat(server.capacity_bytes)}"
            )

    def do_drain(self, name: str, **options: Any) -> None:
        server = Server.objects.filter(name=name).first()
        if server is None:
            raise CommandError(f"There is no server named {name}.")
        server.draining = True
        server.save(update_fields=["draining"])
        for database in Database.objects.filter(server=server).exclude(name=None):
            target = place()
            if target is None:
                raise CommandError(f"No other server has room for {database.name}.")
            self.stdout.write(f"Moving {database.name} to {target.name}")
            run_in_terminal(lifecycle.start_move(database, target, by=None), self.stdout)
        self.stdout.write(f"{name} holds no database any more; it receives no new ones.")
