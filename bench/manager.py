"""Database manager benchmark: the page of an account with 500 databases.

Targets: the number of SQL queries does not grow with the number of databases, and the server
time of the page stays under 100 ms. The page is requested in-process through Django's test
client (the whole middleware stack, no network), best of 20.

    .venv/bin/python bench/manager.py [--count 500]
"""

from __future__ import annotations

import argparse
import time

from _setup import setup_django, verdict, workdir

TARGET_MS = 100.0


def page(client: object) -> tuple[float, int]:
    """Milliseconds (best of 20) and queries of one request to the manager page."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    best = float("inf")
    for _ in range(20):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get("/databases/")  # type: ignore[attr-defined]
            best = min(best, (time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return best, len(queries.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    with workdir() as root:
        setup_django(root / "data")
        from django.test import Client

        from tenantry.accounts.models import User
        from tests.conftest import database_records

        owner = User.objects.create_user("bench@example.com", "a long bench passphrase")
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(owner)
        database_records(owner, 5, "few")
        few_ms, few_queries = page(client)
        database_records(owner, args.count - 5, "many")
        many_ms, many_queries = page(client)
        print(f"5 databases: {few_ms:.1f} ms, {few_queries} queries")
        print(f"{args.count} databases: {many_ms:.1f} ms, {many_queries} queries")
        print(f"queries constant: {verdict(few_queries == many_queries)}")
        print(f"server time {many_ms:.1f} ms (target < {TARGET_MS:.0f} ms): "
              f"{verdict(many_ms < TARGET_MS)}")  # fmt: skip


if __name__ == "__main__":
    main()
