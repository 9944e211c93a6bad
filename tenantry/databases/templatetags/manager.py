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
from django.utils.safestring import SafeString, mark_safe

from tenantry.databases.models import Membership
from tenantry.releases import models as releases

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
        <td data-label="Size">{size}</td>
        <td class="actions">{connect}{manage}</td>
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
              <a href="{activity}">Activity</a>
              <a href="{duplicate}">Duplicate</a>
              <a href="{rename}">Rename</a>
              <a href="{delete}" class="danger">Delete</a>
            </div>
          </details>"""


SLOT = "database-name"


@cache
def _paths() -> dict[str, str]:
    """The row's paths by action, each with SLOT where the database's name goes."""
    actions = [
        "connect", "users", "download", "backups", "activity", "duplicate", "rename", "delete"
    ]  # fmt: skip
    return {action: reverse(f"database_{action}", args=[SLOT]) for action in actions}


@register.simple_tag(takes_context=True)
def database_rows(context: dict[str, Any], memberships: list[Membership]) -> SafeString:
    csrf = format_html(
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}">', context["csrf_token"]
    )
    deprecated = releases.deprecated_versions()
    return mark_safe("".join(_row(m, csrf, deprecated) for m in memberships))  # noqa: S308 (rows of format_html)


def _row(m: Membership, csrf: SafeString, deprecated: set[str]) -> SafeString:
    db = m.database
    name = db.name or ""  # the view lists only databases with a name (not deleted ones)
    operation_id = getattr(m, "operation_id", None)  # annotated by the view
    if operation_id:
        status = format_html(
            '<a href="{}" class="badge busy">In progress…</a>',
            reverse("operation", args=[operation_id]),
        )
    elif db.is_expired:
        status = mark_safe('<span class="badge danger">Expired</span>')  # noqa: S308 (a constant)
    else:
        badge = "warn" if db.expires_at else "ok" if db.status == db.Status.ACTIVE else ""
        status = format_html('<span class="badge {}">{}</span>', badge, db.status_label)
    active = db.status == db.Status.ACTIVE
    paths = {action: path.replace(SLOT, name) for action, path in _paths().items()}
    connect = (
        format_html(CONNECT, name=name, csrf=csrf, connect=paths["connect"])
        if active and not db.is_expired
        else ""
    )
    manage = format_html(MANAGE, name=name, **paths) if active and m.role == m.Role.ADMIN else ""
    release = db.release
    if release in deprecated:
        release = format_html('{} <span class="badge warn">deprecated</span>', release)
    return format_html(
        ROW, name=name, url=db.url, release=release, role=m.get_role_display(),  # type: ignore[attr-defined]
        status=status, size=filesizeformat(db.size_bytes), connect=connect, manage=manage,
    )  # fmt: skip
