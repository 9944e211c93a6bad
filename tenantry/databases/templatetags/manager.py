"""The rows of the database manager, written here rather than in its template: an account may
have hundreds of databases, and the template engine took most of the page's time on them
(bench/manager.py). For the same reason the paths of databases/urls.py are reversed once, with
a slot for the name, not once a link.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django import template
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from tenantry.billing import quotas
from tenantry.databases.models import Database, Membership
from tenantry.releases import models as releases
from tenantry.releases import upgrade as upgrades

register = template.Library()

# A name has up to 63 characters: the name cell wraps it anywhere, and `title` shows it whole
# on hover. data-label names the small cells where a phone shows rows as blocks (portal.css).
ROW = """
      <tr id="db-{name}">
        <td class="name"><strong title="{name}">{name}</strong><br>
          <a href="{url}" class="muted">{url}</a></td>
        <td data-label="Release">{release}</td>
        <td>{role}</td>
        <td>{status}</td>
        <td data-label="Size">{size}{usage}</td>
        <td class="actions">{connect}{manage}{upgrade}</td>
      </tr>"""
CONNECT = """
          <form method="post" action="{connect}" class="inline">
            {csrf}<button type="submit" aria-label="Connect to {name}">Connect</button>
          </form>"""
MANAGE = """
          <details class="manage">
            <summary aria-label="Manage {name}">Manage</summary>
            <div class="menu">
              <a href="{users}">Users</a>
              <a href="{download}">Download</a>
              <a href="{backups}">Backups</a>
              <a href="{activity}">Activity</a>{report}
              <a href="{domains}">Domains</a>
              <a href="{duplicate}">Duplicate</a>
              <a href="{rename}">Rename</a>
              <a href="{support}">Contact support</a>
              <a href="{delete}" class="danger">Delete</a>
            </div>
          </details>"""
# Under the buttons: what the database may be upgraded to (a deadline makes it an action to
# take), or the failure of its automatic upgrade. There, not under the release: that column is
# narrow, and a wider one pushed the buttons off a tablet's screen.
MUST_UPGRADE = '<br><a href="{path}" class="badge warn">Upgrade to {release} by {deadline}</a>'
MAY_UPGRADE = '<br><a href="{path}" class="muted">{release} available</a>'
# The sweep tries no other automatic upgrade: support has to look at it. A link to Contact
# support, its form pre-filled with the database and what happened (FAILED_QUERY).
UPGRADE_FAILED = '<br><a href="{support}" class="badge danger">Upgrade failed: contact support</a>'
FAILED_QUERY = "&" + urlencode({"category": "technical", "subject": "Automatic upgrade failed"})
REPORT = '\n              <a href="{path}">Upgrade report</a>'
# For administrators: the subscription has more users than it pays for (inviting is refused).
OVER_USERS = '<br><a href="{path}" class="badge warn">{counted} of {paid} users</a>'
# Under the status: who pays for the database (its subscription's code, a link for the
# subscription's owner), or, for its administrators, how to keep it past its trial.
CODE = '<br><span class="muted" title="Subscription">{code}</span>'
CODE_LINK = '<br><a href="{path}" class="muted" title="Subscription">{code}</a>'
SUBSCRIBE = '<br><a href="{path}?database={name}">Subscribe</a>'
# Expired: why, and what to do (the sentence every refused action says).
EXPIRED = '<span class="badge danger">Expired</span><br><span class="muted">{why}</span>{actions}'
SUBSCRIBE_OR_LINK = '<br><a href="{path}?database={name}">Subscribe or link it</a>'
# An expired copy: only support brings it back (its sentence says so).
CONTACT_SUPPORT = '<br><a href="{support}">Contact support</a>'
EXPIRED_COPY_QUERY = "&" + urlencode({"category": "other", "subject": "Bring back an expired copy"})
# Under the status, for the partner: the trial project the database belongs to.
PROJECT = '<br><a href="{path}" class="muted">Trial project</a>'
# Under the size: what the databases sharing its limit use together (billing.quotas), in the
# warning's colour from 80 %, when the partner is mailed.
USAGE = """<div class="usage{warn}" title="Used by the databases that share this limit">
          <progress max="{limit}" value="{used}" aria-label="Storage used">{percent} %</progress>
          <span>{used_text} of {limit_text}</span></div>"""


SLOT = "database-name"


@cache
def _paths() -> dict[str, str]:
    """The row's paths by action, each with SLOT where the database's name goes; "support" is
    Contact support's form, pre-filled with the database (a name needs no quoting)."""
    actions = [
        "connect", "upgrade", "users", "download", "backups", "activity", "domains",
        "duplicate", "rename", "delete",
    ]  # fmt: skip
    paths = {action: reverse(f"database_{action}", args=[SLOT]) for action in actions}
    paths["support"] = reverse("support_new") + "?" + urlencode({"database": SLOT})
    return paths


@cache
def _report_path() -> str:
    return reverse("upgrade_report", args=[0]).replace("/0/", "/{}/")


@cache
def _subscribe_path() -> str:
    return reverse("subscribe")


@cache
def _subscription_path() -> str:
    return reverse("subscription", args=[SLOT])


@cache
def _project_path() -> str:
    return reverse("project", args=[0]).replace("/0/", "/{}/")


@register.simple_tag(takes_context=True)
def database_rows(
    context: dict[str, Any],
    memberships: list[Membership],
    usage: dict[int, tuple[int, int]],
    over: dict[int, tuple[int, int]],
) -> SafeString:
    """`usage`: each limited database's bytes used and limit (quotas.usages); `over`: the
    subscriptions paying for fewer users than they have (subscriptions.users_over)."""
    csrf = format_html(
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">', context["csrf_token"]
    )
    published = releases.Published()  # read once for the page, not once a database
    return mark_safe("".join(_row(m, csrf, published, usage, over) for m in memberships))  # noqa: S308 (rows of format_html)


def _row(
    m: Membership,
    csrf: SafeString,
    published: releases.Published,
    usage: dict[int, tuple[int, int]],
    over: dict[int, tuple[int, int]],
) -> SafeString:
    db = m.database
    name = db.name or ""  # the view lists only databases with a name (not deleted ones)
    paths = {action: path.replace(SLOT, name) for action, path in _paths().items()}
    operation_id = getattr(m, "operation_id", None)  # annotated by the view
    if operation_id:
        status = format_html(
            '<a href="{}" class="badge busy">In progress…</a>',
            reverse("operation", args=[operation_id]),
        )
    else:
        status = _status(m, name, paths)
    project = db.project  # selected with the database by the view
    if project is not None and project.partner_id == m.user_id:  # type: ignore[attr-defined]
        status += format_html(PROJECT, path=_project_path().format(project.pk))
    active = db.status == db.Status.ACTIVE
    usable = active and not db.is_expired
    if m.role == m.Role.ADMIN and db.subscription_id in over:  # type: ignore[attr-defined]
        counted, paid = over[db.subscription_id]  # type: ignore[attr-defined]
        status += format_html(OVER_USERS, path=paths["users"], counted=counted, paid=paid)
    connect = format_html(CONNECT, name=name, csrf=csrf, connect=paths["connect"]) if usable else ""
    admin = m.role == m.Role.ADMIN
    upgrade_id = getattr(m, "upgrade_id", None)  # annotated by the view: the last report's
    report = format_html(REPORT, path=_report_path().format(upgrade_id)) if upgrade_id else ""
    manage = format_html(MANAGE, name=name, report=report, **paths) if active and admin else ""
    release = db.release
    if release in published.deprecated:
        release = format_html('{} <span class="badge warn">deprecated</span>', release)
    upgrade = _upgrade(db, admin, published, paths["upgrade"], paths["support"]) if usable else ""
    return format_html(
        ROW, name=name, url=db.url, release=release, role=m.get_role_display(),  # type: ignore[attr-defined]
        status=status, size=filesizeformat(db.size_bytes), usage=_usage(usage.get(db.pk)),
        connect=connect, manage=manage, upgrade=upgrade,
    )  # fmt: skip


def _usage(found: tuple[int, int] | None) -> SafeString:
    if found is None:  # no limit: a trial of its own
        return mark_safe("")  # noqa: S308 (nothing)
    used, limit = found
    percent = 100 * used // limit if limit else 100
    warn = " warn" if percent >= min(quotas.WARNINGS) else ""
    return format_html(
        USAGE, warn=warn, limit=limit, used=min(used, limit), percent=percent,
        used_text=filesizeformat(used), limit_text=filesizeformat(limit),
    )  # fmt: skip


def _status(m: Membership, name: str, paths: dict[str, str]) -> SafeString:
    """The status badge, with the subscription's code, the trial's Subscribe link, or why the
    database expired and what to do. The view selects the subscription with the database."""
    db = m.database
    admin = m.role == m.Role.ADMIN
    subscription = db.subscription
    own = subscription is not None and subscription.owner_id == m.user_id  # type: ignore[attr-defined]
    code = mark_safe("")  # noqa: S308 (nothing)
    if own:
        path = _subscription_path().replace(SLOT, db.subscription_code)
        code = format_html(CODE_LINK, path=path, code=db.subscription_code)
    elif subscription is not None:
        code = format_html(CODE, code=db.subscription_code)
    if db.is_expired:
        actions = code  # its owner pays its invoices there
        if admin and db.source_id is None:  # type: ignore[attr-defined]
            actions += format_html(SUBSCRIBE_OR_LINK, path=_subscribe_path(), name=name)
        elif db.source_id is not None:  # type: ignore[attr-defined]
            actions += format_html(CONTACT_SUPPORT, support=paths["support"] + EXPIRED_COPY_QUERY)
        return format_html(EXPIRED, why=db.expiry_refusal(), actions=actions)
    badge = "warn" if db.expires_at else "ok" if db.status == db.Status.ACTIVE else ""
    status = format_html('<span class="badge {}">{}</span>', badge, db.status_label)
    if db.trial_days_left is not None and admin and db.status == db.Status.ACTIVE:
        return status + format_html(SUBSCRIBE, path=_subscribe_path(), name=name)
    return status + code


def _upgrade(
    db: Database, admin: bool, published: releases.Published, path: str, support: str
) -> SafeString:
    """The upgrade on offer to an administrator, or the failure of the automatic one (a link
    to Contact support)."""
    if db.upgrade_failed_at:
        return format_html(UPGRADE_FAILED, support=support + FAILED_QUERY)
    if not admin:  # only administrators may upgrade
        return mark_safe("")
    offered, deadline = upgrades.offer(db, published)
    if offered is None:
        return mark_safe("")
    if deadline is None:
        return format_html(MAY_UPGRADE, path=path, release=offered)
    return format_html(MUST_UPGRADE, path=path, release=offered, deadline=deadline.date())
