"""A real Redis server for tests, started by the suite itself (Debian's `redis-server`).

Load with `pytest_plugins = ["tests.redis_server"]`, then use the `redis_url` fixture: one
server for the session, on 127.0.0.1 only, keeping nothing on disk, flushed before each test.

The `both_caches` fixture runs a test twice: with the caches in the control database (the
embedded default), then in Redis (production's TENANTRY_CACHE_URL=redis://...). The modules
and tests whose behaviour lives in the caches (the gateway's lookups, rate limits and
lock-outs, used 2FA codes, idempotency keys) ask for it with
`pytest.mark.usefixtures("both_caches")`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pytest_django.fixtures import Settings

from tenantry.settings import caches_for
from tests.postgres import HOST, free_port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise RuntimeError("No Redis server: install it, e.g. `apt-get install redis-server`.")
    folder: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"Redis did not start on port {port}.")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    redis.Redis.from_url(redis_server).flushdb()
    return redis_server


@pytest.fixture(params=["database", "redis"])
def both_caches(request: pytest.FixtureRequest, settings: Settings) -> str:
    """The caches in the control database (emptied with each test's transaction), or in a
    Redis flushed before the test; which one."""
    if request.param == "redis":
        settings.CACHES = caches_for(request.getfixturevalue("redis_url"))
    return request.param  # type: ignore[no-any-return]
