"""Every verb on a database's custom domains: add, remove, verify, make primary; and the
sweep's checks (pending ones with backoff for 7 days, verified ones daily).

A domain is verified by DNS: a CNAME of the domain to `<name>.<base domain>`, or a TXT record
`_tenantry-challenge.<domain>` holding the domain's token (for an apex, which cannot have a
CNAME). The resolver is the system's, or TENANTRY_DNS_NAMESERVERS.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import datetime, timedelta

import dns.exception
import dns.nameserver
import dns.resolver
from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.databases import activity
from tenantry.databases.models import Database, Membership
from tenantry.domains.models import Domain

logger = logging.getLogger(__name__)

LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
CHALLENGE = "_tenantry-challenge"
PENDING_DAYS = 7  # a pending domain is checked this long, then marked failed
LOST_DAYS = 3  # a verified domain whose records are gone this long stops being served
RECHECK = timedelta(days=1)
BACKOFF_MAX = timedelta(hours=6)


def normalize(typed: str) -> str:
    """The domain's name in ASCII (IDNA), checked against the hostname rules; a sentence for
    each rule broken."""
    name = typed.strip().rstrip(".").lower()
    if not name:
        raise ValidationError("Enter a domain name, such as shop.example.com.", code="invalid")
    if "*" in name:
        raise ValidationError(
            "A wildcard cannot be added: add each name you want served.", code="invalid"
        )
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValidationError("An IP address is not a domain name.", code="invalid")
    try:
        ascii_name = name.encode("idna").decode()
    except UnicodeError:
        raise ValidationError(f"“{typed}” is not a valid domain name.", code="invalid") from None
    base = settings.BASE_DOMAIN
    if ascii_name == base or ascii_name.endswith("." + base):
        raise ValidationError(
            f"Names under {base} are Tenantry's own: add a domain of yours.", code="invalid"
        )
    labels = ascii_name.split(".")
    if len(labels) < 2 or not all(LABEL.fullmatch(label) for label in labels):
        raise ValidationError(
            f"“{typed}” is not a valid domain name: labels of 1 to 63 letters, digits and "
            "hyphens, separated by dots (shop.example.com).",
            code="invalid",
        )
    if len(ascii_name) > 253:
        raise ValidationError("A domain name has 253 characters at most.", code="invalid")
    return ascii_name


def add(database: Database, typed: str, *, by: User | None) -> Domain:
    """A pending domain of the database, to be verified by DNS."""
    with activity.refusals(database, activity.Kind.DOMAIN, by=by, detail=f"added {typed}"):
        database.refuse_if_expired()
        name = normalize(typed)
        if database.domains.count() >= settings.MAX_DOMAINS:  # type: ignore[attr-defined]
            raise ValidationError(
                f"“{database.name}” has {settings.MAX_DOMAINS} domains, the most a database "
                "may have: remove one first.",
                code="limit",
            )
        # Only a verified domain holds its name: a pending one of another database does not,
        # and the first to verify it wins.
        if Domain.objects.filter(name=name, state=Domain.State.VERIFIED).exists():
            raise ValidationError(f"{name} is already a domain of a database here.", code="taken")
        try:
            with transaction.atomic():
                domain = Domain.objects.create(database=database, name=name)
                activity.record(
                    database, activity.Kind.DOMAIN, by=by, detail=f"added {domain.display}"
                )
        except IntegrityError:
            raise ValidationError(
                f"{name} is already a domain of a database here.", code="taken"
            ) from None
    return domain


def remove(domain: Domain, *, by: User | None) -> None:
    database = domain.database
    with transaction.atomic():
        if domain.primary:
            Database.objects.filter(pk=database.pk).update(primary_domain="")
        domain.delete()
        activity.record(database, activity.Kind.DOMAIN, by=by, detail=f"removed {domain.display}")


def make_primary(domain: Domain, *, by: User | None) -> None:
    """The database's other hosts redirect to it (301)."""
    database = domain.database
    detail = f"made {domain.display} primary"
    with activity.refusals(database, activity.Kind.DOMAIN, by=by, detail=detail):
        if domain.state != Domain.State.VERIFIED:
            raise ValidationError(
                f"{domain.display} is not verified: only a verified domain can be primary.",
                code="invalid",
            )
        with transaction.atomic():
            database.domains.update(primary=False)  # type: ignore[attr-defined]
            Domain.objects.filter(pk=domain.pk).update(primary=True)
            Database.objects.filter(pk=database.pk).update(primary_domain=domain.name)
            activity.record(database, activity.Kind.DOMAIN, by=by, detail=detail)


# Checking the records ------------------------------------------------------------------------


def resolver() -> dns.resolver.Resolver:
    """The system's resolver, or the nameservers of TENANTRY_DNS_NAMESERVERS (host[:port])."""
    if not settings.DNS_NAMESERVERS:
        found = dns.resolver.Resolver()
    else:
        found = dns.resolver.Resolver(configure=False)
        servers = []
        for entry in settings.DNS_NAMESERVERS:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            servers.append(dns.nameserver.Do53Nameserver(host or entry, int(port or 53)))
        found.nameservers = servers
    found.lifetime = 5
    return found


def target(database: Database) -> str:
    """What a domain's CNAME points to."""
    return f"{database.name}.{settings.BASE_DOMAIN}"


def records_reason(domain: Domain) -> str:
    """Empty when the DNS points the domain at its database; else why not, in words. A
    verified domain's CNAME may still name the database's former name (it was renamed): the
    host it names leads to this server all the same, and the database holds the domain."""
    expected = target(domain.database)
    ask = resolver()
    missing_name = False
    try:
        answer = ask.resolve(domain.name, "CNAME")
        cname = str(answer[0].target).rstrip(".").lower()  # type: ignore[attr-defined]
        former = domain.state == Domain.State.VERIFIED and cname == domain.target
        if cname == expected or former:
            domain.target = cname
            return ""
        cname_reason = f"the CNAME points to {cname}, not to {expected}"
    except dns.resolver.NXDOMAIN:
        missing_name, cname_reason = True, "the name does not exist"
    except dns.resolver.NoAnswer:
        cname_reason = "no CNAME record"
    try:
        texts = ask.resolve(f"{CHALLENGE}.{domain.name}", "TXT")
        values = [b"".join(r.strings).decode(errors="replace") for r in texts]  # type: ignore[attr-defined]
        if domain.token in values:
            return ""
        return "the TXT record holds another value"
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        pass
    return "the name does not exist" if missing_name else cname_reason


def verify(domain: Domain, *, by: User | None = None, now: datetime | None = None) -> Domain:
    """Check the domain's records now; its state follows (see the sweep for the rules over
    time). A DNS that does not answer changes nothing."""
    now = now or timezone.now()
    try:
        reason = records_reason(domain)
    except dns.exception.DNSException as error:
        logger.info("No DNS answer for %s: %s", domain.name, error)
        reason = "the DNS did not answer: try again in a few minutes"
        Domain.objects.filter(pk=domain.pk).update(reason=reason, checked_at=now)
        domain.reason, domain.checked_at = reason, now
        return domain
    was = domain.state
    others = Domain.objects.filter(name=domain.name, state=Domain.State.VERIFIED)
    if not reason and others.exclude(pk=domain.pk).exists():
        reason = "another database verified this name first"
    domain.checked_at, domain.reason = now, reason
    if not reason:
        domain.state, domain.lost_since = Domain.State.VERIFIED, None
        if domain.target not in ("", target(domain.database)):
            domain.reason = (
                f"the CNAME points to {domain.target}, the database's former name: change it "
                f"to {target(domain.database)}"
            )
        domain.verified_at = domain.verified_at if was == Domain.State.VERIFIED else now
        domain.next_check_at = now + RECHECK
    elif was == Domain.State.VERIFIED:
        domain.lost_since = domain.lost_since or now
        if now - domain.lost_since >= timedelta(days=LOST_DAYS):
            domain.state = Domain.State.FAILED
            _warn_lost(domain)
        domain.next_check_at = now + RECHECK
    else:
        domain.checks += 1
        domain.next_check_at = now + min(timedelta(minutes=2**domain.checks), BACKOFF_MAX)
        if now - domain.created_at >= timedelta(days=PENDING_DAYS):
            domain.state = Domain.State.FAILED
    try:
        with transaction.atomic():
            domain.save()
            if domain.state != was:
                if domain.state != Domain.State.VERIFIED and domain.primary:
                    Domain.objects.filter(pk=domain.pk).update(primary=False)
                    Database.objects.filter(pk=domain.database_id).update(primary_domain="")  # type: ignore[attr-defined]
                    domain.primary = False
                detail = f"{domain.display} {domain.get_state_display().lower()}"
                if reason:
                    detail += f": {reason}"
                activity.record(domain.database, activity.Kind.DOMAIN, by=by, detail=detail)
    except IntegrityError:
        domain.refresh_from_db()
        if not others.exclude(pk=domain.pk).exists():
            raise
        return verify(domain, by=by, now=now)  # another database verified it meanwhile
    return domain


def _warn_lost(domain: Domain) -> None:
    admins = Membership.objects.filter(database=domain.database, role=Membership.Role.ADMIN)
    for email in admins.values_list("user__email", flat=True):
        context = {"domain": domain, "target": target(domain.database), "days": LOST_DAYS}
        get_adapter().send_mail("domains/email/domain_lost", email, context)


def sweep(now: datetime) -> None:
    """Check the domains whose time has come (pending with backoff, verified daily)."""
    due = Domain.objects.filter(
        next_check_at__lte=now, state__in=(Domain.State.PENDING, Domain.State.VERIFIED)
    ).select_related("database")
    for domain in due:
        verify(domain, now=now)
