"""Caddy (Debian's) in front of Tenantry with on-demand TLS, on loopback with its own internal
CA: a verified custom domain gets a certificate (Caddy asked /internal/tls/ask) and reaches
its database's workspace over HTTPS; an unverified one gets no certificate."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.domains import verbs
from tests.dnsserver import Zone
from tests.postgres import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True),
]


@pytest.fixture
def caddy(live_server: Any, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Caddy on a free HTTPS port, proxying to the live server and asking it before each
    certificate; the port and its local CA's root certificate."""
    binary = shutil.which("caddy")
    assert binary, "Debian's caddy is missing: .ci/run installs it"
    port = free_port()
    upstream = live_server.url.removeprefix("http://")
    config = tmp_path / "Caddyfile"
    config.write_text(
        f"""{{
    admin off
    local_certs
    skip_install_trust
    http_port {free_port()}
    https_port {port}
    on_demand_tls {{
        ask {live_server.url}/internal/tls/ask
    }}
}}
https:// {{
    tls {{
        on_demand
    }}
    reverse_proxy {upstream}
}}
"""
    )
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    log = (tmp_path / "caddy.log").open("w")
    process = subprocess.Popen(
        [binary, "run", "--config", str(config), "--adapter", "caddyfile"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "caddy.log").read_text()
                assert time.monotonic() < deadline, "Caddy did not listen within 30 s"
                time.sleep(0.2)
        yield port, tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def fetch(port: int, host: str, context: ssl.SSLContext) -> str:
    """GET /login/ at `host` through Caddy (TLS with that name), as a browser would."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    with raw, context.wrap_socket(raw, server_hostname=host) as tls:
        request = f"GET /login/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer.decode(errors="replace")


def test_a_verified_domain_is_served_over_https_through_caddy_and_no_other(
    engine_kind: str, owner: User, dns_server: Zone, caddy: tuple[int, Path], transactional_db: None
) -> None:
    port, root = caddy
    shop = lifecycle.create("shop", by=owner)
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    assert verbs.verify(verbs.add(shop, "shop.example.com", by=owner)).state == "verified"
    verbs.add(shop, "pending.example.com", by=owner)

    # The first handshake has Caddy ask Tenantry and issue the certificate.
    unchecked = ssl.create_default_context()
    unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
    fetch(port, "shop.example.com", unchecked)
    trusting = ssl.create_default_context(cafile=str(root))
    answer = fetch(port, "shop.example.com", trusting)
    assert answer.startswith("HTTP/1.1 200") and "Sign in" in answer, answer[:500]

    for name in ("pending.example.com", "nobody.example.net"):
        with pytest.raises(ssl.SSLError):
            fetch(port, name, unchecked)
