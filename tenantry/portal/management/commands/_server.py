"""What `serve`, `web` and `worker` share: the production web server and the task worker."""

from __future__ import annotations

import argparse
import multiprocessing
import threading

from django.utils.crypto import get_random_string


def bind_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8000.")
    return host.strip("[]"), int(port)


def at_least_one(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of 1 or more.")
    return int(value)


def add_web_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind", type=bind_address, default=("127.0.0.1", 8000), help="HOST:PORT to listen on"
    )
    parser.add_argument("--workers", type=at_least_one, default=2, help="web worker processes")


def run_web(bind: tuple[str, int], workers: int) -> None:
    """Run Granian, a production WSGI server, until it is stopped."""
    from granian.constants import Interfaces
    from granian.server import Server

    # Spawned, not forked: a forked child would inherit the locks of the worker thread.
    multiprocessing.set_start_method("spawn", force=True)
    host, port = bind
    print(f"Tenantry is listening on http://{host}:{port}", flush=True)
    Server(
        "tenantry.wsgi:application",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        log_access=False,
        blocking_threads=8,
        workers_kill_timeout=10,
    ).serve()


def make_worker():  # type: ignore[no-untyped-def]
    from django_tasks_db.management.commands.db_worker import Worker

    return Worker(
        queue_names=["*"],
        interval=1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=get_random_string(32),
        excluded_queue_names=[],
    )


def start_worker_threads(count: int) -> None:
    """`count` task workers in threads of this process, and the housekeeping beside them."""
    start_housekeeping()
    for n in range(count):
        worker = make_worker()
        threading.Thread(target=worker.run, name=f"tenantry-worker-{n}", daemon=True).start()


def start_housekeeping() -> None:
    """What every worker does besides tasks: resume dead workers' operations, run the sweep."""
    from tenantry.operations.sweep import start_sweeper

    start_sweeper()
