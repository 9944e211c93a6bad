"""Custom domains: the naming rules, verification against a real DNS server (CNAME, TXT,
wrong target, NXDOMAIN, records removed later), the sweep's rechecks over time, the primary
domain, and a deleted database's domains freed at once."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from tenantry.accounts.models import User
from tenantry.databases import lifecycle
from tenantry.databases.models import Activity, Database
from tenantry.domains import verbs
from tenantry.domains.models import Domain
from tests.conftest import client_for
from tests.dnsserver import Zone

pytestmark = pytest.mark.parametrize("engine_kind", ["sqlite"], indirect=True)


@pytest.fixture
def shop(engine_kind: str, owner: User) -> Database:
    return lifecycle.create("shop", by=owner)


def refused(database: Database, typed: str) -> str:
    with pytest.raises(ValidationError) as error:
        verbs.add(database, typed, by=None)
    return " ".join(error.value.messages)


def test_names_follow_the_hostname_rules_with_a_sentence_each(shop: Database, owner: User) -> None:
    assert (
        refused(shop, "localhost")
        == "Names under localhost are Tenantry's own: add a domain of yours."
    )
    assert "are Tenantry's own" in refused(shop, "other.localhost")
    assert refused(shop, "192.168.1.10") == "An IP address is not a domain name."
    assert refused(shop, "[::1]") == "An IP address is not a domain name."
    assert refused(shop, "*.example.com").startswith("A wildcard cannot be added")
    assert "is not a valid domain name" in refused(shop, "shop")
    assert "is not a valid domain name" in refused(shop, "-bad.example.com")
    assert "is not a valid domain name" in refused(shop, f"{'a' * 64}.example.com")
    assert refused(shop, ".".join(["a" * 60] * 5) + ".com") == (
        "A domain name has 253 characters at most."
    )
    unicode = verbs.add(shop, " Bücher.Example. ", by=owner)
    assert (unicode.name, unicode.display) == ("xn--bcher-kva.example", "bücher.example")
    other = lifecycle.create("other", by=owner)
    Domain.objects.filter(pk=unicode.pk).update(state=Domain.State.VERIFIED)
    assert refused(other, "bücher.example") == (
        "xn--bcher-kva.example is already a domain of a database here."
    )
    assert refused(shop, "bücher.example") == (  # once a database, pending or not
        "xn--bcher-kva.example is already a domain of a database here."
    )
    with override_settings(MAX_DOMAINS=2):
        verbs.add(shop, "shop.example.com", by=owner)
        assert refused(shop, "third.example.com").startswith("“shop” has 2 domains")
    entries = Activity.objects.filter(database=shop, kind="domain")
    assert entries.filter(result="done", detail="added bücher.example").exists()
    assert entries.filter(result="refused").count() >= 9


def test_verification_reads_the_real_dns_and_says_why_not(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    by_cname = verbs.add(shop, "www.example.com", by=owner)
    assert verbs.verify(by_cname).reason == "the name does not exist"
    dns_server.set("www.example.com", "A", "192.0.2.1")
    assert verbs.verify(by_cname).reason == "no CNAME record"
    dns_server.remove("www.example.com")
    dns_server.set("www.example.com", "CNAME", "elsewhere.example.net")
    found = verbs.verify(by_cname)
    assert (found.state, found.reason) == (
        "pending",
        "the CNAME points to elsewhere.example.net, not to shop.localhost",
    )
    dns_server.remove("www.example.com")
    dns_server.set("www.example.com", "CNAME", "shop.localhost")
    found = verbs.verify(by_cname)
    assert (found.state, found.reason) == ("verified", "")

    apex = verbs.add(shop, "example.org", by=owner)  # an apex: no CNAME, a TXT record
    dns_server.set("example.org", "A", "192.0.2.1")
    dns_server.set("_tenantry-challenge.example.org", "TXT", "someone else's")
    assert verbs.verify(apex).reason == "the TXT record holds another value"
    dns_server.remove("_tenantry-challenge.example.org")
    dns_server.set("_tenantry-challenge.example.org", "TXT", apex.token)
    assert verbs.verify(apex).state == "verified"
    assert Activity.objects.filter(
        database=shop, kind="domain", detail="www.example.com verified"
    ).exists()


def test_the_sweep_retries_pending_ones_for_a_week_and_drops_lost_ones_after_three_days(
    shop: Database, owner: User, dns_server: Zone, mailoutbox: list
) -> None:
    pending = verbs.add(shop, "late.example.com", by=owner)
    start = pending.created_at
    verbs.sweep(start + timedelta(minutes=1))
    pending.refresh_from_db()
    assert (pending.state, pending.checks) == ("pending", 1)
    waited = pending.next_check_at - start
    verbs.sweep(start + timedelta(minutes=1, seconds=30))  # not due yet: no check
    pending.refresh_from_db()
    assert pending.checks == 1 and pending.next_check_at - start == waited
    verbs.sweep(start + timedelta(days=7, minutes=1))
    pending.refresh_from_db()
    assert (pending.state, pending.reason) == ("failed", "the name does not exist")

    served = verbs.add(shop, "shop.example.com", by=owner)
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    verbs.verify(served, now=start)
    verbs.make_primary(served, by=owner)
    shop.refresh_from_db()
    assert shop.primary_domain == "shop.example.com"
    with pytest.raises(ValidationError, match="only a verified domain can be primary"):
        verbs.make_primary(pending, by=owner)

    dns_server.remove("shop.example.com")  # the customer's records are gone
    verbs.sweep(start + timedelta(days=1, minutes=1))
    served.refresh_from_db()
    assert served.state == "verified" and served.lost_since is not None
    verbs.sweep(start + timedelta(days=3, minutes=2))
    served.refresh_from_db()
    assert served.state == "verified"  # gone for two days: still served
    verbs.sweep(start + timedelta(days=4, minutes=3))
    served.refresh_from_db()
    shop.refresh_from_db()
    assert (served.state, served.primary, shop.primary_domain) == ("failed", False, "")
    assert [m.subject for m in mailoutbox] == [
        "[Tenantry] shop.example.com no longer leads to “shop”"
    ]
    assert mailoutbox[0].to == [owner.email]


def test_nobody_holds_someone_else_s_domain_by_adding_it_first(
    shop: Database, owner: User, outsider: User, dns_server: Zone
) -> None:
    """Pending, a domain holds nothing: the database whose records the DNS shows verifies it,
    and from then on it is that database's alone."""
    squatter = lifecycle.create("squat", by=outsider)
    squatted = verbs.add(squatter, "shop.example.com", by=outsider)
    mine = verbs.add(shop, "shop.example.com", by=owner)  # not refused
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    assert verbs.verify(mine).state == "verified"
    assert verbs.verify(squatted).reason == (
        "the CNAME points to shop.localhost, not to squat.localhost"
    )
    # Even with records that would do for both (its own TXT record), the name is taken.
    dns_server.set(f"{verbs.CHALLENGE}.shop.example.com", "TXT", squatted.token)
    again = verbs.verify(squatted)
    assert (again.state, again.reason) == ("pending", "another database verified this name first")
    with pytest.raises(ValidationError, match="already a domain of a database here"):
        verbs.add(lifecycle.create("late", by=outsider), "shop.example.com", by=outsider)
    page = Client(HTTP_HOST="shop.example.com").get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    assert Client().get("/internal/tls/ask?domain=shop.example.com").status_code == 200


def test_two_databases_verifying_one_name_at_once_give_it_to_one(
    shop: Database, owner: User, dns_server: Zone, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = lifecycle.create("other", by=owner)
    theirs = verbs.add(other, "shop.example.com", by=owner)
    mine = verbs.add(shop, "shop.example.com", by=owner)
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    target, calls = verbs.target, []

    def verified_meanwhile(database: Database) -> str:
        # Asked first by the records' check, then once the others were checked, before the
        # save: the other's verification lands then.
        calls.append(database)
        if len(calls) == 2:
            Domain.objects.filter(pk=theirs.pk).update(state=Domain.State.VERIFIED)
        return target(database)

    monkeypatch.setattr(verbs, "target", verified_meanwhile)
    found = verbs.verify(mine)
    assert (found.state, found.reason) == ("pending", "another database verified this name first")
    assert list(Domain.objects.filter(state="verified")) == [theirs]


def test_a_renamed_database_keeps_its_domains_and_is_told_to_update_the_cname(
    shop: Database, owner: User, dns_server: Zone, mailoutbox: list
) -> None:
    """The customer's CNAME names the former name: still this database's domain (the host
    leads to this server, and the database holds the domain), never dropped after three days;
    the domain says what to change."""
    served = verbs.add(shop, "shop.example.com", by=owner)
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    start = verbs.verify(served).checked_at
    assert start is not None
    page = client_for(owner).get("/databases/shop/rename/").content.decode()
    assert "Its domains (shop.example.com)\n    go on serving it." in page
    assert 'href="/databases/shop/domains/"' in page
    lifecycle.rename(shop, "boutique", by=owner)
    for day in (1, 2, 3, 4, 5):
        verbs.sweep(start + timedelta(days=day, minutes=day))
    served.refresh_from_db()
    assert (served.state, served.lost_since) == ("verified", None)
    assert served.reason == (
        "the CNAME points to shop.localhost, the database's former name: change it to "
        "boutique.localhost"
    )
    assert mailoutbox == []
    page = Client(HTTP_HOST="shop.example.com").get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    # The customer changes it: nothing more to say.
    dns_server.set("shop.example.com", "CNAME", "boutique.localhost")
    verbs.sweep(start + timedelta(days=6, minutes=6))
    served.refresh_from_db()
    assert (served.state, served.reason, served.target) == ("verified", "", "boutique.localhost")
    # The former name proves nothing for a domain not yet verified.
    late = verbs.add(shop, "late.example.com", by=owner)
    dns_server.set("late.example.com", "CNAME", "shop.localhost")
    assert verbs.verify(late).reason == (
        "the CNAME points to shop.localhost, not to boutique.localhost"
    )


def test_a_deleted_database_frees_its_domains_at_once(shop: Database, owner: User) -> None:
    verbs.add(shop, "shop.example.com", by=owner)
    lifecycle.start_delete(shop, by=owner)
    assert not Domain.objects.exists()
    other = lifecycle.create("other", by=owner)
    assert verbs.add(other, "shop.example.com", by=owner).database == other


def test_the_cli_adds_lists_verifies_and_removes_domains(shop: Database, dns_server: Zone) -> None:
    def db(*args: str) -> str:
        out = io.StringIO()
        call_command("db", *args, stdout=out)
        return out.getvalue()

    added = db("domain-add", "shop", "www.example.com")
    token = Domain.objects.get().token
    assert "www.example.com. CNAME shop.localhost." in added
    assert f'_tenantry-challenge.www.example.com. TXT "{token}"' in added
    with pytest.raises(CommandError, match="www.example.com is pending: the name does not exist"):
        db("domain-verify", "shop", "www.example.com")
    assert db("domains", "shop") == "www.example.com\tpending\tthe name does not exist\n"
    dns_server.set("www.example.com", "CNAME", "shop.localhost")
    assert db("domain-verify", "shop", "WWW.example.com") == "www.example.com is verified.\n"
    with pytest.raises(CommandError, match="shop has no domain other.example.com"):
        db("domain-remove", "shop", "other.example.com")
    with pytest.raises(CommandError, match="Names under localhost are Tenantry's own"):
        db("domain-add", "shop", "x.localhost")
    assert db("domain-remove", "shop", "www.example.com") == "www.example.com removed from shop.\n"
    assert db("domains", "shop") == ""


def test_the_gateway_serves_a_verified_domain_and_redirects_to_the_primary(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    domain = verbs.add(shop, "shop.example.com", by=owner)
    pending = Client(HTTP_HOST="shop.example.com").get("/login/")
    assert pending.status_code == 404
    assert "shop.example.com is not verified yet" in pending.content.decode()
    assert Client(HTTP_HOST="nobody.example.com").get("/login/").status_code == 404

    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    verbs.verify(domain)
    page = Client(HTTP_HOST="shop.example.com").get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content
    assert Client(HTTP_HOST="shop.localhost").get("/login/").status_code == 200

    verbs.make_primary(domain, by=owner)
    moved = Client(HTTP_HOST="shop.localhost:8000").get("/contacts/?q=ada")
    assert moved.status_code == 301
    assert moved["Location"] == "http://shop.example.com:8000/contacts/?q=ada"
    posted = Client(HTTP_HOST="shop.localhost").post("/login/", {"login": "x", "password": "y"})
    assert posted.status_code != 301  # posts stay where they are (Connect posts there)
    assert Client(HTTP_HOST="shop.example.com").get("/login/").status_code == 200


def test_caddy_may_ask_for_a_certificate_only_for_served_names(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    def ask(name: str, **extra: str) -> int:
        return Client(**extra).get("/internal/tls/ask", {"domain": name}).status_code

    domain = verbs.add(shop, "shop.example.com", by=owner)
    assert ask("shop.example.com") == 404  # pending
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    verbs.verify(domain)
    assert ask("shop.example.com") == 200
    assert ask("SHOP.example.com.") == 200
    assert ask("shop.localhost") == 200
    assert ask("nobody.localhost") == 404
    assert ask("anything.example.net") == 404
    assert ask("shop.example.com", REMOTE_ADDR="203.0.113.9") == 403
    assert ask("shop.example.com", HTTP_X_FORWARDED_FOR="203.0.113.9") == 403  # via the proxy
    Database.objects.filter(pk=shop.pk).update(expired=True)
    assert ask("shop.localhost") == 404


def test_a_session_of_one_host_is_not_valid_on_another(
    shop: Database, owner: User, dns_server: Zone
) -> None:
    from tests.helpers import signed_in

    domain = verbs.add(shop, "shop.example.com", by=owner)
    dns_server.set("shop.example.com", "CNAME", "shop.localhost")
    verbs.verify(domain)
    client = signed_in(shop, owner)  # at shop.localhost
    assert client.get("/").status_code == 200
    carried = client.get("/", HTTP_HOST="shop.example.com")  # its cookie, another host
    assert carried.status_code == 302 and carried["Location"].startswith("/login/")


def test_another_database_s_failed_domain_no_longer_holds_the_name(
    shop: Database, owner: User
) -> None:
    lost = verbs.add(shop, "shop.example.com", by=owner)
    Domain.objects.filter(pk=lost.pk).update(state="failed")
    other = lifecycle.create("other", by=owner)
    assert verbs.add(other, "shop.example.com", by=owner).database == other
    # Shop's stays, failed, on its page (the gateway serves the one verified).
    assert shop.domains.get().state == "failed"  # type: ignore[attr-defined]
