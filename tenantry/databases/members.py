"""The users of a database: invitations, acceptance, removal and roles.

A member is an account with a Membership and, inside the database, an active user whose login
is the email it was invited with, linked to the account (so the account password works there).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.http import Http404
from django.tasks import task
from django.utils import timezone

from tenantry.accounts.models import User
from tenantry.billing import subscriptions
from tenantry.databases import activity
from tenantry.databases.models import ConnectToken, Database, Invitation, Membership
from tenantry.engines.base import EngineError
from tenantry.workspace import models as ws
from tenantry.workspace import tenant

Role = Membership.Role
Kind = activity.Kind


def listing(database: Database) -> list[dict[str, str]]:
    """Its members (status "member") then its pending invitations ("invited")."""
    rows = [
        {"email": m.user.email, "role": m.role, "status": "member"}
        for m in database.memberships.select_related("user").order_by("user__email")  # type: ignore[attr-defined]
    ]
    pending = database.invitations.filter(accepted_at=None)  # type: ignore[attr-defined]
    return rows + [{"email": i.email, "role": i.role, "status": "invited"} for i in pending]


# Invitations mail any address the inviter types: a request may name this many, and an
# account may send settings.INVITES_PER_DAY a day (resent ones included).
MAX_AT_ONCE = 50


def _refuse_over_max(count: int) -> None:
    if count > MAX_AT_ONCE:
        raise ValidationError(f"Invite at most {MAX_AT_ONCE} addresses at once, not {count}.")


def parse_emails(text: str) -> list[str]:
    """Addresses separated by commas, spaces or lines; each checked, each once."""
    parts = text.replace(",", " ").split()
    _refuse_over_max(len(set(p.lower() for p in parts)))  # before checking each of them
    emails: list[str] = []
    for part in parts:
        email = part.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError(f"“{part}” is not an email address.") from None
        if email not in emails:
            emails.append(email)
    if not emails:
        raise ValidationError("Enter at least one email address.")
    return emails


def _spend_invitations(by: User, count: int) -> None:
    """Count `count` invitation mails against the account's day, or refuse them all."""
    limit = settings.INVITES_PER_DAY
    if not by.spend_invitations(count, limit):
        left = by.invitations_left(limit)
        raise ValidationError(
            f"An account can send {limit} invitations a day, and "
            f"{f'{left} are' if left else 'none is'} left today. Try again tomorrow.",
            code="throttled",
        )


def invite(database: Database, emails: list[str], role: str, *, by: User) -> list[Invitation]:
    """Invite each address (a pending invitation is renewed); the worker mails the links."""
    detail = f"{', '.join(emails)} as {role}"
    sent = []
    # One transaction: the checks (the subscription's users: one invitation at a time per
    # subscription, see lock), the invitations and the task that mails them. A refusal undoes
    # what it had counted, and is recorded once it is undone.
    with activity.refusals(database, Kind.INVITE, by=by, detail=detail), transaction.atomic():
        subscriptions.lock(database)
        needed = _refuse_invitations(database, emails, role, by)
        if needed:  # a plan that grows: the subscription takes the users it needs
            subscriptions.grow(subscriptions.paying(database), needed, database, by=by)  # type: ignore[arg-type]
        for email in emails:
            invitation = (
                database.invitations.filter(email=email, accepted_at=None).first()  # type: ignore[attr-defined]
                or Invitation(database=database, email=email)
            )
            invitation.role, invitation.invited_by = role, by
            invitation.new_token()  # the old link stops working; the mail brings a new one
            invitation.save()
            sent.append(invitation)
        send_invitations.enqueue([i.pk for i in sent])
        activity.record(database, Kind.INVITE, by=by, detail=detail)
    return sent


def _refuse_invitations(database: Database, emails: list[str], role: str, by: User) -> int:
    """Refuse what cannot be; the users the subscription must grow to (0: none)."""
    database.refuse_if_expired()
    _refuse_over_max(len(emails))
    if role not in Role.values:
        raise ValidationError(f"The role is “user” or “admin”, not “{role}”.")
    members = set(
        database.memberships.filter(user__email__in=emails).values_list("user__email", flat=True)  # type: ignore[attr-defined]
    )
    already = [e for e in emails if e in members]
    if already:
        raise ValidationError(f"Already a user of “{database.name}”: {', '.join(already)}.")
    needed = subscriptions.users_needed(database, emails)
    _spend_invitations(by, len(emails))
    return needed


def resend(invitation: Invitation, *, by: User) -> None:
    database, detail = invitation.database, f"{invitation.email} again"
    with activity.refusals(database, Kind.INVITE, by=by, detail=detail):
        database.refuse_if_expired()
        _spend_invitations(by, 1)
    with transaction.atomic():
        invitation.new_token()
        invitation.save(update_fields=["token_hash", "expires_at"])
        send_invitations.enqueue([invitation.pk])
        activity.record(database, Kind.INVITE, by=by, detail=detail)


@task
def send_invitations(ids: list[int]) -> None:
    """Mail each invitation its link, made here: a link is only ever in its mail (the
    request that invited keeps only hashes, and this task's arguments no secret)."""
    for invitation in Invitation.objects.filter(pk__in=ids, accepted_at=None):
        token = invitation.new_token()
        invitation.save(update_fields=["token_hash", "expires_at"])
        context: dict[str, Any] = {
            "invitation": invitation,
            "link": f"{settings.PORTAL_URL}/invitations/{token}/",
        }
        get_adapter().send_mail("databases/email/invitation", invitation.email, context)


def check(invitation: Invitation | None, account: User | None = None) -> Invitation:
    """The invitation if its link may still be used (by `account`, when given)."""
    if invitation is None or invitation.accepted_at is not None:
        raise ValidationError("This invitation link is not valid (any more). Ask for a new one.")
    if invitation.is_expired:
        raise ValidationError("This invitation has expired. Ask for a new one.")
    if invitation.database.name is None:
        raise ValidationError("The database of this invitation no longer exists.")
    invitation.database.refuse_if_expired()
    if account is not None and account.email.lower() != invitation.email.lower():
        raise ValidationError(
            f"This invitation is for {invitation.email}. Sign in with that address to accept it."
        )
    return invitation


def accept(invitation: Invitation, account: User) -> Membership:
    check(invitation, account)
    database = invitation.database
    with tenant.using(database) as db:
        # The address may have been another member's before they changed it: their user
        # keeps it as login, and stays theirs (one whose account left may be taken).
        others = database.memberships.exclude(user=account).values_list("user_id", flat=True)  # type: ignore[attr-defined]
        theirs = ws.User.objects.using(db).filter(login__iexact=invitation.email)
        if theirs.filter(account_id__in=list(others)).exists():
            raise ValidationError(
                f"“{invitation.email}” is the login of another user of “{database.name}”. "
                "Ask its administrators to invite another address."
            )
        _link(db, account, invitation.email, invitation.role)
    with transaction.atomic():
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        membership, _ = Membership.objects.update_or_create(
            database=database, user=account, defaults={"role": invitation.role}
        )
        detail = f"{invitation.email} as {invitation.role}"
        activity.record(database, Kind.ACCEPT, by=account, detail=detail)
    return membership


def _link(db: str, account: User, login: str, role: str) -> None:
    """The account's active user in the database: found by its login, or made."""
    user = ws.User.objects.using(db).filter(login__iexact=login).first()
    if user is None:
        user = ws.User(login=login, contact_email=login)
    user.name = user.name or account.name
    user.account_id, user.is_active = account.pk, True
    user.is_admin = role == Role.ADMIN
    user.save(using=db)


def link_members(db: str, database: Database, passwords: dict[int, str] | None = None) -> None:
    """After a restore: the database's users linked to its current members, and every other
    user deactivated with no password of its own. A backup holds the users of its day: a user
    removed since (who may have set a database password) must not come back with it, and a
    backup from elsewhere links its users to accounts that mean nothing here.

    `passwords`: the members' database passwords (hashes, by account) as they are in the
    database replaced. A member's is their own: the backup's would be whatever the ZIP says,
    and its uploader could sign in as them."""
    memberships = list(database.memberships.select_related("user"))  # type: ignore[attr-defined]
    ids = [m.user_id for m in memberships]
    ws.User.objects.using(db).exclude(account_id__in=ids).update(
        account_id=None, is_active=False, password=""
    )
    for member in memberships:
        linked = ws.User.objects.using(db).filter(account_id=member.user_id).first()
        _link(db, member.user, linked.login if linked else member.user.email, member.role)
        if passwords is not None:
            ws.User.objects.using(db).filter(account_id=member.user_id).update(
                password=passwords.get(member.user_id, "")
            )


def database_passwords(db: str) -> dict[int, str]:
    """The database passwords of its users linked to accounts, by account (for link_members)."""
    users = ws.User.objects.using(db).values_list("account_id", "password")
    return {account: password for account, password in users if account is not None}


# An expired invitation stays listed (to be resent) this long, then goes.
EXPIRED_KEPT = timedelta(days=30)


def purge_expired(now: datetime) -> None:
    """Invitations expired a month ago, and sign-in tokens past their minute."""
    Invitation.objects.filter(accepted_at=None, expires_at__lt=now - EXPIRED_KEPT).delete()
    ConnectToken.objects.filter(expires_at__lte=now).delete()


def _admins_left(database: Database, without: list[int]) -> int:
    admins = database.memberships.filter(role=Role.ADMIN)  # type: ignore[attr-defined]
    return admins.exclude(user__in=without).count()  # type: ignore[no-any-return]


def remove(database: Database, accounts: list[User], *, by: User | None) -> None:
    """Deactivate their users in the database (ending their sessions there), clear their
    database passwords and unlink them."""
    ids, detail = [a.pk for a in accounts], ", ".join(a.email for a in accounts)
    with activity.refusals(database, Kind.REMOVE, by=by, detail=detail):
        database.refuse_if_expired()
        if not _admins_left(database, ids):
            raise ValidationError("A database keeps at least one administrator.")
    with tenant.using(database) as db:
        ws.User.objects.using(db).filter(account_id__in=ids).update(
            is_active=False, account_id=None, password=""
        )
    with transaction.atomic():
        Membership.objects.filter(database=database, user__in=ids).delete()
        activity.record(database, Kind.REMOVE, by=by, detail=detail)


@receiver(pre_delete, sender=User)
def forget_account(sender: type[User], instance: User, **kwargs: Any) -> None:
    """An account being deleted: its users in its databases are deactivated with no database
    password, as a removal does. Its memberships go with it, and a user left active would
    still let the person in with its database password, listed nowhere in the portal and out
    of its administrators' reach. A database that cannot be reached refuses the deletion (the
    delete's transaction is undone): it is asked again later."""
    account = instance
    memberships = Membership.objects.filter(
        user=account, database__status=Database.Status.ACTIVE
    ).select_related("database")
    for membership in memberships:
        database = membership.database
        try:
            with tenant.using(database) as db:
                ws.User.objects.using(db).filter(account_id=account.pk).update(
                    is_active=False, account_id=None, password=""
                )
        except (EngineError, DatabaseError) as error:
            raise ValidationError(
                f"“{database.name}” cannot be reached right now, and your user there must be "
                "removed first. Try again in a few minutes."
            ) from error
        detail = f"{account.email}: the account was deleted"
        activity.record(database, Kind.REMOVE, by=account, detail=detail)


def cancel(invitation: Invitation, *, by: User | None) -> str:
    database, detail = invitation.database, f"cancelled for {invitation.email}"
    with activity.refusals(database, Kind.INVITE, by=by, detail=detail):
        database.refuse_if_expired()
    with transaction.atomic():
        invitation.delete()
        activity.record(database, Kind.INVITE, by=by, detail=detail)
    return f"The invitation of {invitation.email} is cancelled."


def remove_email(database: Database, email: str, *, by: User | None) -> str:
    """Remove the user with this email, or cancel its invitation: the sentence saying which."""
    account = User.objects.filter(memberships__database=database, email__iexact=email).first()
    if account is not None:
        remove(database, [account], by=by)
        return f"{email} is removed from {database.name}."
    invitation = database.invitations.filter(accepted_at=None, email__iexact=email).first()  # type: ignore[attr-defined]
    if invitation is not None:
        return cancel(invitation, by=by)
    database.refuse_if_expired()  # the same sentence as for anyone listed
    raise Http404(f"{email} is not a user of “{database.name}”.")


def set_role(database: Database, account: User, role: str, *, by: User | None) -> None:
    detail = f"{account.email} as {role}"
    with activity.refusals(database, Kind.ROLE, by=by, detail=detail):
        database.refuse_if_expired()
        if role not in Role.values:
            raise ValidationError(f"The role is “user” or “admin”, not “{role}”.")
        if role == Role.USER and not _admins_left(database, [account.pk]):
            raise ValidationError("A database keeps at least one administrator.")
    with tenant.using(database) as db:
        ws.User.objects.using(db).filter(account_id=account.pk).update(is_admin=role == Role.ADMIN)
    with transaction.atomic():
        database.memberships.filter(user=account).update(role=role)  # type: ignore[attr-defined]
        activity.record(database, Kind.ROLE, by=by, detail=detail)


def change_login(database: Database, account: User, login: str, *, by: User | None) -> None:
    """The login the account's user signs in to the database with: changed only by support
    (product.md section 2). Its password and sessions stay."""
    login = login.strip().lower()
    detail = f"{account.email}: login {login}"
    with activity.refusals(database, Kind.LOGIN, by=by, detail=detail):
        try:
            validate_email(login)
        except ValidationError:
            raise ValidationError(f"“{login}” is not an email address: a login is one.")
        if len(login) > 254:
            raise ValidationError("A login has at most 254 characters.")
        if not database.memberships.filter(user=account).exists():  # type: ignore[attr-defined]
            raise ValidationError(f"{account.email} is not a user of “{database.name}”.")
        with tenant.using(database) as db:
            users = ws.User.objects.using(db)
            user = users.filter(account_id=account.pk).first()
            if user is None:
                raise ValidationError(f"{account.email} has no user in “{database.name}”.")
            if users.filter(login__iexact=login).exclude(pk=user.pk).exists():
                raise ValidationError(
                    f"“{login}” is the login of another user of “{database.name}”."
                )
            old = user.login
            if old == login:
                raise ValidationError(f"{account.email} already signs in with “{login}”.")
            with transaction.atomic(using=db), transaction.atomic():
                users.filter(pk=user.pk).update(login=login)
                detail = f"{account.email}: login {old} → {login}"
                activity.record(database, Kind.LOGIN, by=by, detail=detail)


def logins(database: Database) -> dict[str, str]:
    """Each member's email and the login of their user in the database (what support sees of
    its users, to change one)."""
    accounts = dict(database.memberships.values_list("user_id", "user__email"))  # type: ignore[attr-defined]
    with tenant.using(database) as db:
        found = ws.User.objects.using(db).filter(account_id__in=list(accounts))
        return {accounts[u.account_id]: u.login for u in found.only("login", "account_id")}  # type: ignore[index]
