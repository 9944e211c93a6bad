"""What the API takes and answers: named schemas with a description and an example on every
field, and enums wherever a value is one of a few (a generated client gets types, not strings)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ninja import Field, Schema
from pydantic import field_validator
from pydantic_core import PydanticCustomError

from tenantry.api.middleware import holds_nul


class ErrorCode(StrEnum):
    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BUSY = "busy"
    TAKEN = "taken"
    EXISTS = "exists"
    EXPIRED = "expired"
    LINKED = "linked"
    LIMIT = "limit"
    TOO_LARGE = "too_large"
    INVALID_REQUEST = "invalid_request"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    THROTTLED = "throttled"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


class Error(Schema):
    """Every error's answer: a sentence for a person and a code for a program."""

    detail: str = Field(
        description="What went wrong and what to do, in one or two sentences.",
        examples=["The name “acme” is already taken. Choose another one."],
    )
    code: ErrorCode = Field(
        description="The kind of error, stable across releases.", examples=["taken"]
    )


class Engine(StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


class DatabaseStatus(StrEnum):
    CREATING = "creating"
    ACTIVE = "active"
    DELETING = "deleting"
    EXPIRED = "expired"


class OperationKind(StrEnum):
    DUPLICATE = "duplicate"
    DELETE = "delete"
    MOVE = "move"
    RESTORE = "restore"
    UPGRADE = "upgrade"
    REFRESH = "refresh"


class OperationState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BackupKind(StrEnum):
    DAILY = "daily"
    BEFORE_RESTORE = "before_restore"
    BEFORE_UPGRADE = "before_upgrade"


class UserStatus(StrEnum):
    MEMBER = "member"
    INVITED = "invited"


class ActivityKind(StrEnum):
    CREATE = "create"
    RENAME = "rename"
    DUPLICATE = "duplicate"
    DELETE = "delete"
    MOVE = "move"
    RESTORE = "restore"
    DOWNLOAD = "download"
    BACKUP = "backup"
    INVITE = "invite"
    ACCEPT = "accept"
    REMOVE = "remove"
    ROLE = "role"
    UPGRADE = "upgrade"
    SUBSCRIPTION = "subscription"
    DOMAIN = "domain"
    LOGIN = "login"
    EXPIRY = "expiry"


class UpgradeState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Channel(StrEnum):
    PORTAL = "portal"
    API = "api"
    CLI = "cli"
    SWEEP = "sweep"
    SUPPORT = "support"


class SubscriptionState(StrEnum):
    TRIAL = "trial"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class SubscriptionPeriod(StrEnum):
    MONTH = "month"
    YEAR = "year"


class DomainState(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


class ActivityResult(StrEnum):
    DONE = "done"
    STARTED = "started"
    REFUSED = "refused"
    FAILED = "failed"


NEXT_CURSOR = Field(
    description="Send it as `cursor` to get the next page; null on the last page.",
    examples=["eyJvIjogNTB9"],
)
HAS_MORE = Field(description="Whether another page follows.", examples=[False])


class Me(Schema):
    """The account that owns the API key."""

    email: str = Field(description="The account's email address.", examples=["ada@example.com"])
    name: str = Field(description="The person's name.", examples=["Ada Lovelace"])
    company: str = Field(description="The company's name.", examples=["Analytical Engines"])
    phone: str = Field(description="A phone number.", examples=["+44 20 7946 0000"])
    country: str = Field(description="The country, as typed.", examples=["United Kingdom"])
    developer_mode: bool = Field(description="On: the account may use API keys.", examples=[True])
    two_factor: bool = Field(description="Two-factor authentication is on.", examples=[True])
    date_joined: datetime = Field(
        description="When the account was made.", examples=["2026-11-30T18:15:00Z"]
    )


class Database(Schema):
    """A database the account belongs to."""

    name: str = Field(description="Its name, also its address's first label.", examples=["acme"])
    url: str = Field(description="Its address.", examples=["https://acme.example.com"])
    uuid: UUID = Field(
        description="Its identity, kept by a restore marked moved.",
        examples=["5f0c6a2e-8a4b-4c1e-9d57-2b1f0e7c3a10"],
    )
    release: str = Field(description="The workspace app's release in it.", examples=["1.1"])
    release_deprecated: bool = Field(
        description="Its release is deprecated: upgrade it.", examples=[False]
    )
    upgrade_to: str | None = Field(
        description="The latest release it may be upgraded to; null when it is at the latest.",
        examples=["2.0"],
    )
    upgrade_deadline: datetime | None = Field(
        description="When it must be at the latest major release (after which Tenantry "
        "upgrades it); null when nothing is due, and for test copies.",
        examples=["2027-01-30T18:15:00Z"],
    )
    upgrade_failed: bool = Field(
        description="Tenantry's automatic upgrade of it failed: no other is tried until "
        "support clears this.",
        examples=[False],
    )
    engine: Engine = Field(description="Where its data lives.", examples=["sqlite"])
    role: Role = Field(description="The account's role in it.", examples=["admin"])
    status: DatabaseStatus = Field(description="Its state, for programs.", examples=["active"])
    status_label: str = Field(
        description="Its state, for people.", examples=["Test copy until 2026-12-15"]
    )
    is_test_copy: bool = Field(
        description="A neutralized copy: no mail, payments, carriers or jobs.", examples=[False]
    )
    expires_at: datetime | None = Field(
        description="When a copy expires, or a trial ends; null for others.",
        examples=["2026-12-15T18:15:00Z"],
    )
    size_bytes: int = Field(description="Its size, files included.", examples=[1048576])
    created_at: datetime = Field(description="When it was made.", examples=["2026-11-30T18:15:00Z"])
    subscription: str | None = Field(
        description="The code of the subscription that pays for it; null if none does.",
        examples=["M2611-4F7Q"],
    )
    trial_ends_at: datetime | None = Field(
        description="When its trial ends, while no subscription pays for it; null for others "
        "(a subscribed database, a copy).",
        examples=["2026-12-15T18:15:00Z"],
    )
    expired: bool = Field(
        description="Its trial or its subscription has ended: it can only be downloaded or "
        "backed up until a live subscription takes it.",
        examples=[False],
    )
    usage_bytes: int = Field(
        description="The storage used, files included, by what shares its limit (its "
        "subscription's databases, or its trial project's); its own without a limit.",
        examples=[1048576],
    )
    limit_bytes: int | None = Field(
        description="The storage its subscription's plan allows (for all the subscription's "
        "databases together), or its trial project's 1 GB; null for a trial of its own.",
        examples=[10737418240],
    )


class DatabaseList(Schema):
    """A page of the account's databases, by name."""

    data: list[Database] = Field(description="The databases of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class UpgradeTable(Schema):
    """A table's rows before and after an upgrade."""

    table: str = Field(description="The table's name.", examples=["workspace_contact"])
    before: int | None = Field(
        description="Its rows before; null if the upgrade made it.", examples=[120]
    )
    after: int | None = Field(
        description="Its rows after; null if the upgrade dropped it, or while it runs.",
        examples=[120],
    )


class UpgradeReport(Schema):
    """How an upgrade went: its steps, the one that failed, and each table's rows."""

    id: int = Field(description="Its id.", examples=[3])
    url: str = Field(
        description="Its page on the portal.", examples=["https://tenantry.example.com/upgrades/3/"]
    )
    state: UpgradeState = Field(
        description="Where it is: succeeded and failed are final.", examples=["succeeded"]
    )
    test: bool = Field(
        description="A test upgrade: a test copy was upgraded, not the database.",
        examples=[False],
    )
    automatic: bool = Field(
        description="Tenantry started it, the database's deadline having come.", examples=[False]
    )
    from_release: str = Field(description="The release it started from.", examples=["1.1"])
    to_release: str = Field(description="The release it goes to.", examples=["2.0"])
    steps: list[str] = Field(
        description="The migrations run, in order (the failing one last).",
        examples=[["0003_release_2_0"]],
    )
    failed_step: str = Field(
        description="The migration that failed; empty otherwise.", examples=[""]
    )
    error: str = Field(description="Why it failed; empty otherwise.", examples=[""])
    duration_seconds: float | None = Field(
        description="How long it took; null while it runs.", examples=[4.2]
    )
    tables: list[UpgradeTable] = Field(
        description="Each table's rows before and after, by name.", examples=[[]]
    )
    # Not `copy`: that would shadow pydantic's BaseModel.copy().
    test_copy: str | None = Field(
        description="A test upgrade's copy (the database upgraded); null for others, and once "
        "the copy is gone.",
        examples=["acme-upgrade-2-0"],
    )


class Operation(Schema):
    """A long action (duplicate, delete, move, restore, upgrade): poll it until it is done or
    failed."""

    id: int = Field(description="Its id.", examples=[42])
    url: str = Field(
        description="Where to poll it (also in the answer's Location header).",
        examples=["/api/v1/operations/42"],
    )
    kind: OperationKind = Field(description="What it does.", examples=["duplicate"])
    database: str = Field(description="The database's name when it started.", examples=["acme"])
    state: OperationState = Field(
        description="Where it is: done and failed are final.", examples=["running"]
    )
    progress: int = Field(description="Percent done.", examples=[60])
    step: str = Field(description="What it is doing now.", examples=["Copying the files"])
    error: str = Field(description="Why it failed; empty otherwise.", examples=[""])
    target: str | None = Field(
        description="The database it makes (a duplicate's copy, a test upgrade's copy).",
        examples=["acme-copy"],
    )
    created_at: datetime = Field(
        description="When it was asked for.", examples=["2026-11-30T18:15:00Z"]
    )
    finished_at: datetime | None = Field(
        description="When it ended; null while it runs.", examples=["2026-12-15T18:15:00Z"]
    )
    result: UpgradeReport | None = Field(
        description="An upgrade's report; null for other kinds.", examples=[None]
    )


class RequestBody(Schema):
    """What a request sends, as JSON or as a form: no text in it may hold a NUL character,
    which PostgreSQL's text cannot (api.middleware refuses one in the address and query)."""

    @field_validator("*", mode="before")
    @classmethod
    def refuse_nul(cls, value: Any) -> Any:
        if holds_nul(value):
            raise PydanticCustomError("nul", "No text may hold a NUL character (U+0000).")
        return value


class CreateDatabaseRequest(RequestBody):
    """The name of a new database."""

    name: str = Field(
        description="3 to 63 lowercase letters, digits and hyphens (capitals are made lowercase).",
        examples=["acme"],
    )


class RenameDatabaseRequest(RequestBody):
    """A database's new name."""

    name: str = Field(description="The new name, by the same rules.", examples=["acme-corp"])


class DuplicateDatabaseRequest(RequestBody):
    """The copy to make."""

    name: str = Field(description="The copy's name.", examples=["acme-test"])
    for_testing: bool = Field(
        default=True,
        description="Neutralize the copy: its mail, payments, carriers and jobs off.",
        examples=[True],
    )


class UpgradeDatabaseRequest(RequestBody):
    """The release to upgrade to, and whether to test it on a copy first."""

    release: str | None = Field(
        default=None,
        max_length=20,
        description="A published release above the database's; the latest published if none.",
        examples=["2.0"],
    )
    test: bool = Field(
        default=False,
        description="Upgrade a neutralized test copy (named like acme-upgrade-2-0, for 15 days) "
        "and leave the database as it is.",
        examples=[False],
    )


class RestoreDatabaseRequest(RequestBody):
    """A backup to restore: a ZIP sent as `file`, or a stored backup's id as `backup`."""

    backup: int | None = Field(
        default=None, description="The id of a stored backup you may restore.", examples=[7]
    )
    replace: bool = Field(
        default=False,
        description="Restore over the database of that name (it is backed up first).",
        examples=[False],
    )
    as_copy: bool = Field(
        default=True,
        description="Give it a new identity (uuid); false keeps the backup's (a move).",
        examples=[True],
    )
    neutralize: bool = Field(
        default=False,
        description="Turn off its mail, payments, carriers and jobs.",
        examples=[False],
    )


class Backup(Schema):
    """A stored backup of a database."""

    id: int = Field(description="Its id.", examples=[7])
    created_at: datetime = Field(description="When it was made.", examples=["2026-11-30T18:15:00Z"])
    kind: BackupKind = Field(description="Why it was made.", examples=["daily"])
    release: str = Field(description="The release of the database it holds.", examples=["1.1"])
    engine: Engine = Field(description="The engine of the database it holds.", examples=["sqlite"])
    size: int = Field(description="The ZIP's size in bytes.", examples=[204800])


class BackupList(Schema):
    """A page of a database's stored backups, newest first."""

    data: list[Backup] = Field(description="The backups of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class User(Schema):
    """A user of a database, or a pending invitation."""

    email: str = Field(description="The account's or the invited address.", examples=["bo@x.io"])
    role: Role = Field(description="Their role.", examples=["admin"])
    status: UserStatus = Field(
        description="A member, or invited and not yet joined.", examples=["member"]
    )


class UserList(Schema):
    """A page of a database's users, then its pending invitations."""

    data: list[User] = Field(description="The users of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class InviteUsersRequest(RequestBody):
    """The people to invite: each gets a mail with a link that works once, for 7 days."""

    emails: list[str] = Field(
        description="Their addresses, 50 at most.", examples=[["bo@example.com"]]
    )
    role: Role = Field(
        default=Role.USER, description="Their role once they join.", examples=["admin"]
    )


class Activity(Schema):
    """One action on a database."""

    created_at: datetime = Field(description="When.", examples=["2026-11-30T18:15:00Z"])
    actor: str = Field(
        description="Who: the account's email, or Tenantry itself.", examples=["ada@example.com"]
    )
    kind: ActivityKind = Field(description="What.", examples=["rename"])
    detail: str = Field(description="What exactly.", examples=["from acme to acme-corp"])
    channel: Channel = Field(description="Through what.", examples=["api"])
    ip: str | None = Field(description="From which client address.", examples=["203.0.113.7"])
    result: ActivityResult = Field(description="How it ended.", examples=["done"])
    reason: str = Field(description="Why it was refused or failed; empty otherwise.", examples=[""])


class ActivityList(Schema):
    """A page of a database's activity, newest first."""

    data: list[Activity] = Field(description="The entries of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class Release(Schema):
    """A release of the workspace app that databases may be on."""

    version: str = Field(description="Its version.", examples=["1.1"])
    published_at: datetime = Field(
        description="When it was offered.", examples=["2026-11-30T18:15:00Z"]
    )
    deprecated: bool = Field(description="Still running, no longer supported.", examples=[False])
    latest: bool = Field(description="New databases are made at it.", examples=[True])


class ReleaseList(Schema):
    """A page of the published releases, oldest first."""

    data: list[Release] = Field(description="The releases of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class Plan(Schema):
    """What a subscription pays for: prices per user, and its limits."""

    name: str = Field(description="Its name, unique.", examples=["Standard"])
    price_month: str = Field(
        description="The price per user for a month, a decimal.", examples=["10.00"]
    )
    price_year: str = Field(
        description="The price per user for a year, a decimal.", examples=["100.00"]
    )
    storage_bytes: int = Field(
        description="The storage of its databases and their files, together.",
        examples=[10737418240],
    )
    max_databases: int = Field(description="How many databases it takes.", examples=[5])
    grows: bool = Field(
        description="Inviting past the subscription's users adds users to it instead of being "
        "refused.",
        examples=[False],
    )


class Invoice(Schema):
    """An invoice of a subscription's period, at the plan and users of the day it was issued."""

    number: str = Field(description="Its number.", examples=["INV-000042"])
    issued_at: datetime = Field(
        description="When it was issued.", examples=["2026-11-30T18:15:00Z"]
    )
    period_start: datetime = Field(
        description="The start of the period it pays for.", examples=["2026-11-30T18:15:00Z"]
    )
    period_end: datetime = Field(
        description="The end of the period it pays for.", examples=["2027-11-30T18:15:00Z"]
    )
    plan: str = Field(description="The plan's name then.", examples=["Standard"])
    users: int = Field(description="The users it charges for.", examples=[5])
    amount: str = Field(description="What it charges, a decimal.", examples=["500.00"])
    paid: bool = Field(description="Whether it is paid.", examples=[True])


class Subscription(Schema):
    """A subscription of the account: what it pays for, and until when."""

    code: str = Field(
        description="Its code, as invoices and databases show it.", examples=["M2611-4F7Q"]
    )
    plan: Plan = Field(
        description="Its plan.",
        examples=[
            {
                "name": "Standard",
                "price_month": "10.00",
                "price_year": "100.00",
                "storage_bytes": 10737418240,
                "max_databases": 5,
                "grows": False,
            }
        ],
    )
    period: SubscriptionPeriod = Field(description="How often it is invoiced.", examples=["year"])
    users: int = Field(description="The users it pays for.", examples=[5])
    state: SubscriptionState = Field(
        description="Where it is: past_due while an invoice is unpaid (its databases are still "
        "served), expired once the grace period is over; cancelled and expired take no database.",
        examples=["active"],
    )
    renews_at: datetime = Field(
        description="The end of the period paid for: the next invoice is issued then, or it "
        "ends then if cancelled.",
        examples=["2027-11-30T18:15:00Z"],
    )
    cancel_at_period_end: bool = Field(
        description="Cancelled: it ends at `renews_at` instead of renewing.", examples=[False]
    )
    created_at: datetime = Field(
        description="When it was taken.", examples=["2026-11-30T18:15:00Z"]
    )
    databases: list[str] = Field(
        description="The databases it pays for, by name.", examples=[["acme"]]
    )


class SubscriptionDetails(Subscription):
    """A subscription of the account, with its invoices."""

    users_taken: int = Field(
        description="The users of its databases, pending invitations included: past `users`, "
        "inviting more is refused unless the plan grows.",
        examples=[3],
    )
    invoices: list[Invoice] = Field(description="Its invoices, newest first.", examples=[[]])


class SubscriptionList(Schema):
    """A page of the account's subscriptions, by code."""

    data: list[Subscription] = Field(description="The subscriptions of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class ChangeSubscriptionRequest(RequestBody):
    """What to change in a subscription: at once, and the next invoice shows it."""

    users: int | None = Field(
        default=None,
        le=100_000,
        description="The number of users it pays for (at least 1); unchanged if none.",
        examples=[8],
    )
    plan: str | None = Field(
        default=None,
        max_length=100,
        description="The name of another plan; unchanged if none.",
        examples=["Premium"],
    )


class LinkDatabaseRequest(RequestBody):
    """The database the subscription is to pay for."""

    name: str = Field(
        description="The name of a database you administer (not a copy).", examples=["acme"]
    )


class DnsRecord(Schema):
    """A DNS record to add at the domain's DNS provider."""

    name: str = Field(
        description="The record's name, fully qualified (ending with a dot).",
        examples=["shop.example.com."],
    )
    value: str = Field(
        description="The record's value (a CNAME's target ends with a dot).",
        examples=["acme.tenantry.example.com."],
    )


class DomainRecords(Schema):
    """What to add to verify a domain: either record is enough."""

    cname: DnsRecord = Field(
        description="A CNAME of the domain to the database's address (not for an apex "
        "domain, which cannot have a CNAME).",
        examples=[{"name": "shop.example.com.", "value": "acme.tenantry.example.com."}],
    )
    txt: DnsRecord = Field(
        description="A TXT record holding a token of this database and domain (for any "
        "domain, apex ones included).",
        examples=[
            {
                "name": "_tenantry-challenge.shop.example.com.",
                "value": "3f1c9a0b7d2e4f6a8b1c3d5e7f9a0b2c",
            }
        ],
    )


class Domain(Schema):
    """A custom domain of a database: served once DNS points it at the database."""

    name: str = Field(
        description="The domain, in Unicode as people read it.", examples=["bücher.example"]
    )
    ascii_name: str = Field(
        description="The domain in ASCII (IDNA), as DNS and browsers carry it.",
        examples=["xn--bcher-kva.example"],
    )
    state: DomainState = Field(
        description="pending until its records are found; verified while they are (it is "
        "served); failed when they were not found for 7 days, or gone for 3.",
        examples=["pending"],
    )
    reason: str = Field(
        description="Why it is not verified, as a person reads it; empty when verified.",
        examples=["no CNAME record"],
    )
    primary: bool = Field(
        description="The database's other addresses redirect to it (301).", examples=[False]
    )
    records: DomainRecords = Field(
        description="The DNS records to add, either one.",
        examples=[
            {
                "cname": {
                    "name": "xn--bcher-kva.example.",
                    "value": "acme.tenantry.example.com.",
                },
                "txt": {
                    "name": "_tenantry-challenge.xn--bcher-kva.example.",
                    "value": "3f1c9a0b7d2e4f6a8b1c3d5e7f9a0b2c",
                },
            }
        ],
    )
    created_at: datetime = Field(
        description="When it was added.", examples=["2026-11-30T18:15:00Z"]
    )
    verified_at: datetime | None = Field(
        description="When it was verified; null until then.", examples=["2026-11-30T18:20:00Z"]
    )
    checked_at: datetime | None = Field(
        description="When its records were last checked; null until then.",
        examples=["2026-11-30T18:20:00Z"],
    )


class DomainList(Schema):
    """A page of a database's custom domains, by name."""

    data: list[Domain] = Field(description="The domains of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR


class AddDomainRequest(RequestBody):
    """The domain to add to a database."""

    domain: str = Field(
        max_length=300,
        description="A domain of yours, in Unicode or ASCII (not under Tenantry's own domain, "
        "not an IP address or a wildcard).",
        examples=["shop.example.com"],
    )


class SupportCategory(StrEnum):
    TECHNICAL = "technical"
    BILLING = "billing"
    ACCOUNT = "account"
    OTHER = "other"


class SupportState(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class SupportAuthor(StrEnum):
    YOU = "you"
    SUPPORT = "support"


class OpenSupportRequest(RequestBody):
    """A question for Tenantry's support team. As JSON, or as multipart/form-data with up to 5
    files in `attachments`."""

    subject: str = Field(
        description="What it is about, in a line (200 characters at most).",
        examples=["The nightly import stopped"],
    )
    description: str = Field(
        description="What happened, what you expected, and since when (20,000 characters at most).",
        examples=["Since Monday the import of orders ends with an error at 02:00."],
    )
    category: SupportCategory = Field(description="What kind of question.", examples=["technical"])
    database: str | None = Field(
        default=None,
        description="The name of one of your databases it is about: support gets its details "
        "as they are now (release, engine, size...). Left out, null or empty: the account in "
        "general.",
        examples=["acme"],
    )


class ReplySupportRequest(RequestBody):
    """A reply to a support request: as JSON, or as multipart/form-data with up to 5 files in
    `attachments`."""

    body: str = Field(
        description="The message (20,000 characters at most).",
        examples=["It happened again tonight: the log is attached."],
    )


class SupportAttachment(Schema):
    """A file attached to a message."""

    id: int = Field(description="Its id.", examples=[5])
    name: str = Field(
        description="Its name as it was sent, without any folder.", examples=["import.log"]
    )
    size: int = Field(description="Its size in bytes.", examples=[20480])
    url: str = Field(
        description="Where to download it (with the API key).",
        examples=["/api/v1/support/12/files/5"],
    )


class SupportMessage(Schema):
    """A message of a support request's conversation."""

    id: int = Field(description="Its id.", examples=[31])
    author: SupportAuthor = Field(
        description="Who wrote it: you (the account), or Tenantry's support team.",
        examples=["you"],
    )
    body: str = Field(description="The message.", examples=["The import stopped on Monday."])
    created_at: datetime = Field(description="When it was sent.", examples=["2026-11-30T18:15:00Z"])
    attachments: list[SupportAttachment] = Field(
        description="Its files, in the order they were sent.", examples=[[]]
    )


class SupportRequest(Schema):
    """A support request of the account."""

    id: int = Field(description="Its id.", examples=[12])
    number: str = Field(description="Its number, as mails and pages show it.", examples=["#12"])
    url: str = Field(
        description="Its page on the portal.", examples=["https://tenantry.example.com/support/12/"]
    )
    subject: str = Field(description="What it is about.", examples=["The nightly import stopped"])
    category: SupportCategory = Field(description="What kind of question.", examples=["technical"])
    state: SupportState = Field(
        description="open while support has to answer, answered while it waits for you (a "
        "reply opens it again), closed.",
        examples=["open"],
    )
    database: str | None = Field(
        description="The name of the database it is about, when it was asked; null for none.",
        examples=["acme"],
    )
    created_at: datetime = Field(
        description="When it was asked.", examples=["2026-11-30T18:15:00Z"]
    )
    updated_at: datetime = Field(
        description="Its last message or change of state.", examples=["2026-11-30T18:15:00Z"]
    )


class SupportDatabaseDetails(Schema):
    """The database a support request is about, as its record was when the request was asked
    (read by Tenantry, never sent by the client). A value it did not have is empty."""

    name: str = Field(description="Its name.", examples=["acme"])
    uuid: str = Field(
        description="Its identity.", examples=["5f0c6a2e-8a4b-4c1e-9d57-2b1f0e7c3a10"]
    )
    url: str = Field(description="Its address.", examples=["https://acme.example.com"])
    release: str = Field(description="The workspace app's release in it.", examples=["1.1"])
    engine: str = Field(description="Where its data lived.", examples=["sqlite"])
    size: str = Field(description="Its size, for people.", examples=["1.0 MB"])
    status: str = Field(description="Its state, for people.", examples=["Trial: 15 days left"])
    subscription: str = Field(
        description="The code of the subscription that paid for it.", examples=["M2611-4F7Q"]
    )


class SupportRequestDetails(SupportRequest):
    """A support request of the account, with its database's details and its messages."""

    details: SupportDatabaseDetails | None = Field(
        description="Its database as it was when the request was asked; null for none.",
        examples=[None],
    )
    messages: list[SupportMessage] = Field(
        description="The conversation, oldest first: the request's description is the first.",
        examples=[[]],
    )


class SupportRequestList(Schema):
    """A page of the account's support requests, the last updated first."""

    data: list[SupportRequest] = Field(description="The requests of this page.", examples=[[]])
    has_more: bool = HAS_MORE
    next_cursor: str | None = NEXT_CURSOR
