"""Gateway benchmark: what routing a request by host adds to it.

Target: under 1 ms per request. The gateway middleware is called in-process with a response
that costs nothing, for a database host among 500 databases (the lookup served by the shared
cache, as in production after the first request) and for the portal host (no lookup: the
baseline). The first lookup, which reads the control database, is shown beside them.

    .venv/bin/python bench/gateway.py [--count 500] [--requests 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _setup import setup_django, verdict, workdir

TARGET_MS = 1.0


def timings(middleware: object, factory: object, host: str, requests: int) -> list[float]:
    """Milliseconds per call of the middleware for `requests` requests to `host`."""
    durations = []
    for _ in range(requests):
        request = factory.get("/", HTTP_HOST=host)  # type: ignore[attr-defined]
        started = time.perf_counter()
        middleware(request)  # type: ignore[operator]
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with workdir() as root:
        setup_django(root / "data")
        from django.http import HttpResponse
        from django.test import RequestFactory

        from tenantry.accounts.models import User
        from tenantry.gateway.middleware import GatewayMiddleware
        from tests.conftest import database_records

        owner = User.objects.create_user("bench@example.com", "a long bench passphrase")
        database_records(owner, args.count, "db")
        middleware = GatewayMiddleware(lambda request: HttpResponse())
        factory = RequestFactory()
        host = f"db-{args.count // 2}.localhost"

        first = timings(middleware, factory, host, 1)[0]
        database = timings(middleware, factory, host, args.requests)
        portal = timings(middleware, factory, "127.0.0.1", args.requests)
        added = statistics.mean(database) - statistics.mean(portal)
        p99 = statistics.quantiles(database, n=100)[98]
        print(f"{args.count} databases, {args.requests} requests each")
        print(f"first request to {host} (reads the control database): {first:.3f} ms")
        print(f"database host, cached: mean {statistics.mean(database):.3f} ms, p99 {p99:.3f} ms")
        print(f"portal host (baseline): mean {statistics.mean(portal):.3f} ms")
        print(f"added by the lookup: {added:.3f} ms (target < {TARGET_MS:.0f} ms): "
              f"{verdict(added < TARGET_MS)}")  # fmt: skip


if __name__ == "__main__":
    main()
