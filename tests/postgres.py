"""Real PostgreSQL servers for tests, started by the suite itself.

Load with `pytest_plugins = ["tests.postgres"]`, then use the `pg_server` fixture for one server
or `pg_servers` for two (e.g. to move a database from one to the other). Both are session-scoped:
the servers start on first use and stop at the end of the session, or at interpreter exit if the
session ends abnormally. Each server is a fresh cluster in its own temporary folder, listening only
on 127.0.0.1, with trust authentication for the superuser `postgres` and durability turned off.

PostgreSQL refuses to run as root. When the tests run as root, the servers run as an unprivileged
system user instead: `postgres` if it exists, else `tenantry-pg` (created on first use).

With TENANTRY_TEST_CONTROL=postgresql, tests/settings.py starts one more server for the control
plane (`start_control`), and each data dir that the tests' commands run on gets a control
database of its own there (`control_url`). As settings.py imports this module before pytest loads
it as a plugin, too late for pytest to rewrite its asserts (it has none), PYTEST_DONT_REWRITE
spares the warning.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

HOST = "127.0.0.1"
PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
FALLBACK_SERVER_USER = "tenantry-pg"
SERVER_COUNT = 2
START_ATTEMPTS = 3  # each with a new port, in case another process took the one we picked

# Added to postgresql.conf: no durability (the data is thrown away), and small enough to run
# several servers on a small machine.
SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it; the window for a race is tiny)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@cache
def find_bin_dir() -> Path:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for candidate in PG_ROOT.glob("*/bin"):
        version = candidate.parent.name
        if (candidate / "initdb").is_file() and version.replace(".", "").isdigit():
            found.append((tuple(int(part) for part in version.split(".")), candidate))
    if not found:
        raise RuntimeError(
            f"No PostgreSQL server found: expected {PG_ROOT}/<version>/bin/initdb. "
            "Install it, e.g. `apt-get install postgresql`."
        )
    return max(found)[1]


@cache
def server_user() -> str | None:
    """The user to run PostgreSQL as, or None to run it as ourselves (when we aren't root)."""
    if os.geteuid() != 0:
        return None
    for name in (SERVER_USER, FALLBACK_SERVER_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    # check=False: another process may be creating the same user right now.
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_SERVER_USER],
        capture_output=True,
        check=False,
    )  # fmt: skip
    pwd.getpwnam(FALLBACK_SERVER_USER)  # raises KeyError if it still doesn't exist
    return FALLBACK_SERVER_USER


def as_user(user: str | None, command: list[str]) -> list[str]:
    """`command`, run as `user` (None: as ourselves)."""
    if user is None:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *command]
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]


def give_to(user: str, folder: Path) -> None:
    """Make `folder` belong to `user`, and let `user` reach it through its parent folders.

    pytest's temporary folders are only accessible to their owner (mode 0700), so this adds the
    "search" bit for others (o+x: enter, not list) to those parents that lack it.
    """
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    for parent in folder.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def run(command: list[str], cwd: Path | None = None, input: str | None = None) -> str:
    """Run `command` and return its standard output; raise with all its output if it fails."""
    result = subprocess.run(
        command,
        cwd=cwd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed with exit code {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
        )
    return result.stdout


class PostgresServer:
    """A throwaway PostgreSQL cluster in `base`: `start()` creates and starts it, `stop()` ends it.

    Connect as the superuser `postgres`, without a password, through `url`.
    """

    def __init__(self, base: Path, settings: dict[str, str] | None = None) -> None:
        self.base = base
        self.settings = {**SETTINGS, **(settings or {})}
        self.bin_dir = find_bin_dir()
        self.data_dir = base / "data"
        self.socket_dir = base / "sock"  # short: a socket path may be at most 107 bytes
        self.log_file = base / "server.log"
        self.port = 0
        self.running = False
        self._user = server_user()

    @property
    def url(self) -> str:
        """The URL of the `postgres` database, e.g. postgresql://postgres@127.0.0.1:5432/postgres."""
        return self.url_for("postgres")

    def url_for(self, db: str) -> str:
        """The URL of database `db` on this server."""
        return f"postgresql://postgres@{HOST}:{self.port}/{quote(db, safe='')}"

    def start(self) -> PostgresServer:
        """Create the cluster with initdb, then start it on a free port (and wait until it's up)."""
        self.socket_dir.mkdir(parents=True)
        if self._user is not None:
            give_to(self._user, self.base)
            give_to(self._user, self.socket_dir)
        self._pg(
            "initdb",
            "--pgdata", str(self.data_dir),
            "--username", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )  # fmt: skip
        settings = {**self.settings, "unix_socket_directories": str(self.socket_dir)}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Added by tests/postgres.py\n")
            for name, value in settings.items():
                quoted = value.replace("'", "''")
                conf.write(f"{name} = '{quoted}'\n")

        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._pg_ctl("start", "-l", str(self.log_file), "-o", f"-p {self.port}")
            except RuntimeError as error:
                log = self.log_file.read_bytes()[log_start:].decode(errors="replace")
                if "Address already in use" in log and attempt < START_ATTEMPTS:
                    continue
                raise RuntimeError(f"{error}\n--- {self.log_file} ---\n{log}") from None
            break
        self.running = True
        _running.add(self)
        return self

    def stop(self) -> None:
        """Stop the server at once (no clean shutdown: the data is thrown away) and delete it."""
        try:
            if self.running:
                self._pg_ctl("stop", "-m", "immediate")
        finally:
            self.running = False
            _running.discard(self)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run `sql` with psql (unaligned, tuples only; stops at the first error) and return the
        output, e.g. `server.psql("SELECT 1")` returns "1"."""
        command = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        return run([*command, "-d", self.url_for(db)], input=sql).rstrip("\n")

    def _pg(self, program: str, *args: str) -> str:
        """Run a PostgreSQL server program as the server's user."""
        command = as_user(self._user, [str(self.bin_dir / program), *args])
        # The server's user may not be allowed into our current folder.
        return run(command, cwd=self.base)

    def _pg_ctl(self, action: str, *args: str) -> str:
        return self._pg("pg_ctl", action, "--wait", "--pgdata", str(self.data_dir), *args)

    def __repr__(self) -> str:
        return f"<PostgresServer {self.url if self.running else 'stopped'} in {self.base}>"


# Servers still running, stopped at exit in case the session didn't get to its teardown.
_running: set[PostgresServer] = set()


@atexit.register
def _stop_leftovers(pid: int = os.getpid()) -> None:
    if os.getpid() != pid:  # a child that a test forked: the servers are its parent's
        return
    for server in list(_running):
        try:
            server.stop()
        except Exception as error:  # keep stopping the others
            print(f"Could not stop {server!r}: {error}")


# The control plane's own server, with TENANTRY_TEST_CONTROL=postgresql (tests/settings.py).
# The live server's threads, the in-process workers and the tests' own connections add up; 100
# is PostgreSQL's default.
CONTROL_SETTINGS = {"max_connections": "300"}
control: PostgresServer | None = None
_control_databases: set[str] = set()


def start_control() -> PostgresServer:
    """Start the control plane's server; it stops, and its folder goes, at exit."""
    global control
    base = Path(tempfile.mkdtemp(prefix="tenantry-control-pg-"))
    control = PostgresServer(base, settings=CONTROL_SETTINGS).start()
    atexit.register(_stop_control, control, os.getpid())
    return control


def _stop_control(server: PostgresServer, pid: int) -> None:
    if os.getpid() == pid:  # not in a child that a test forked
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _control_name(data_dir: Path) -> str:
    return "data_" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:24]


def control_url(data_dir: Path) -> str | None:
    """The control database of the commands a test runs on `data_dir` (tests/helpers.py
    env_for), or None when the control plane is SQLite (a file in `data_dir`). It is a database
    of its own on the control server, made on first use."""
    if control is None:
        return None
    name = _control_name(data_dir)
    if name not in _control_databases:
        with psycopg.connect(control.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        _control_databases.add(name)
    return control.url_for(name)


def copy_control_database(source: Path, target: Path) -> None:
    """Give `target` a copy of `source`'s control database (nothing with a SQLite control plane:
    the file is in the data dir). Nobody may be connected to `source`'s."""
    if control is not None:
        name = _control_name(target)
        with psycopg.connect(control.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_control_name(source)}"')
        _control_databases.add(name)


@pytest.fixture(scope="session")
def pg_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PostgresServer]]:
    """Two running PostgreSQL servers, shared by the whole session."""
    servers = [PostgresServer(tmp_path_factory.mktemp("pg")) for _ in range(SERVER_COUNT)]
    try:
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            # list(): wait for both, and raise the first error.
            list(pool.map(PostgresServer.start, servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def pg_server(pg_servers: list[PostgresServer]) -> PostgresServer:
    """One running PostgreSQL server, shared by the whole session."""
    return pg_servers[0]
