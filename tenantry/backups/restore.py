"""Restore: a backup ZIP made into a database, a new one or in place of one.

What a ZIP says is checked before anything changes, each problem with its own sentence: a
damaged ZIP, a file that is no backup, a newer release or format, the other engine, and (in
the worker, reading every member once) a checksum that does not match. The dump is loaded into
a new physical database; an existing database is backed up first and only swapped for the new
one at the end, so a restore that fails leaves it untouched and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import uuid
import zipfile
import zlib
from contextlib import nullcontext
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from tenantry.accounts.models import User
from tenantry.backups import archive, store
from tenantry.backups.models import Backup
from tenantry.billing import quotas
from tenantry.databases import activity, lifecycle, members
from tenantry.databases.models import Activity, Database, Membership
from tenantry.engines import filestore
from tenantry.engines.base import Engine
from tenantry.engines.fleet import engine_for, place
from tenantry.operations.models import KINDS, Kind, Operation
from tenantry.workspace import models as ws
from tenantry.workspace import tenant
from tenantry.workspace.mail import hold_queued
from tenantry.workspace.releases import LATEST, RELEASES

logger = logging.getLogger(__name__)

NOT_A_ZIP = "This file is not a readable ZIP: it is damaged, cut short, or not a ZIP at all."
NOT_A_BACKUP = "This ZIP is not a Tenantry backup: it has no valid manifest.json."
MANIFEST_MAX = 10 * 1024 * 1024
FILESTORE_MEMBER = re.compile(r"^filestore/([0-9a-f]{2})/\1[0-9a-f]{62}$")
ENGINES = dict(Database.Engine.choices)


def read_manifest(file: IO[bytes]) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    """The ZIP and its manifest, checked for shape: every member it lists is there, and
    nothing lies outside dump.sql and filestore/."""
    try:
        zipped = zipfile.ZipFile(file)
        if zipped.getinfo("manifest.json").file_size > MANIFEST_MAX:
            raise ValidationError(NOT_A_BACKUP)
        manifest = json.loads(zipped.read("manifest.json"))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError):
        raise ValidationError(NOT_A_ZIP)
    except (KeyError, ValueError):
        raise ValidationError(NOT_A_BACKUP)
    except (RuntimeError, NotImplementedError) as error:
        raise ValidationError(_unreadable(error))
    files = manifest.get("files") if isinstance(manifest, dict) else None
    strings = ("database", "uuid", "release", "engine")
    if (
        not isinstance(files, dict)
        or "dump.sql" not in files
        or not all(isinstance(manifest.get(key), str) for key in strings)
        # The release and engine are stored in the control plane: PostgreSQL's text holds no NUL.
        or any("\x00" in manifest[key] for key in strings)
        or not isinstance(manifest.get("format"), int)
    ):
        raise ValidationError(NOT_A_BACKUP)
    try:
        uuid.UUID(manifest["uuid"])
    except ValueError:
        raise ValidationError(NOT_A_BACKUP)
    if manifest["format"] > archive.FORMAT_VERSION:
        raise ValidationError(
            f"This backup was made by a newer version of Tenantry (format {manifest['format']}). "
            "Upgrade Tenantry to restore it."
        )
    present = {info.filename: info for info in zipped.infolist()}
    for name, facts in files.items():
        if name != "dump.sql" and not FILESTORE_MEMBER.match(name):
            raise ValidationError(f"{NOT_A_BACKUP[:-1]} (unexpected member “{name}”).")
        if not isinstance(facts, dict) or not isinstance(facts.get("sha256"), str):
            raise ValidationError(NOT_A_BACKUP)
        if name not in present:
            raise ValidationError(f"The backup is incomplete: “{name}” is missing from the ZIP.")
    # What the ZIP unpacks to must fit: deflate packs up to a thousand to one.
    needed = sum(present[name].file_size for name in files)
    free = shutil.disk_usage(settings.DATA_DIR).free
    if needed > free:
        raise ValidationError(
            f"This backup unpacks to {filesizeformat(needed)}, more than the "
            f"{filesizeformat(free)} free here."
        )
    return zipped, manifest


def _unreadable(error: Exception) -> str:
    if "encrypted" in str(error):
        return "This ZIP is encrypted. Send the backup as Tenantry made it, not encrypted."
    return f"This ZIP is packed in a way Tenantry cannot read ({error})."


def inspect(file: IO[bytes]) -> dict[str, Any]:
    """The manifest of a ZIP someone sent, checked for shape (the quick checks)."""
    return read_manifest(file)[1]


def check_fits(release: str, engine: str, target: str, subject: str) -> None:
    """Refuse a backup this platform cannot load on the `target` engine, where `subject`
    ("“shop” is", "new databases here are") goes."""
    if release not in RELEASES:
        raise ValidationError(
            f"This backup is at release {release}, which this platform does not know (its "
            f"latest is {LATEST}). Upgrade Tenantry to restore it."
        )
    if engine not in ENGINES:
        raise ValidationError(NOT_A_BACKUP)
    if engine != target:
        raise ValidationError(
            f"This backup holds a {ENGINES[engine]} database, and {subject} on {ENGINES[target]}. "
            "A backup is restored on the engine it was made with."
        )


def verify(zipped: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    """Read every member once and compare it with the manifest."""
    for name, facts in manifest["files"].items():
        digest, size = hashlib.sha256(), 0
        try:
            with zipped.open(name) as member:
                while chunk := member.read(archive.CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise ValidationError(f"The backup is damaged: “{name}” cannot be read ({error}).")
        except (RuntimeError, NotImplementedError) as error:
            raise ValidationError(_unreadable(error))
        sha = digest.hexdigest()
        named = name.rsplit("/", 1)[-1] if name != "dump.sql" else sha
        if sha != facts["sha256"] or size != facts.get("size", size) or sha != named:
            raise ValidationError(
                f"The backup is damaged: “{name}” does not match the checksum in its manifest."
            )


def unpacked_size(backup: Backup) -> int:
    """What the backup's dump and files take once loaded, as its manifest says (a ZIP packs
    them, a database takes about what its dump does)."""
    with store.open_file(backup) as file:
        _, manifest = read_manifest(file)
    return sum(int(facts.get("size") or 0) for facts in manifest["files"].values())


def keep_upload(file: Any, by: User) -> Backup:
    """Check a ZIP someone sent and put it in the backup storage, for the worker to read."""
    manifest = inspect(file)
    file.seek(0)
    backup = store.new_backup(None, Backup.Kind.UPLOAD, by=by)
    backup.release, backup.engine = manifest["release"], manifest["engine"]
    backup.save(update_fields=["release", "engine"])
    try:
        store.write(backup, file)
    except Exception as error:
        logger.exception("Storing an uploaded backup failed")
        raise ValidationError(f"The backup storage did not take the file ({error}). Try again.")
    return backup


def start(
    backup: Backup,
    target: Database | str,
    *,
    by: User | None,
    as_copy: bool = True,
    neutralize: bool = False,
) -> Operation:
    """Restore `backup` over the database `target`, or into a new database named `target`.
    A refused upload is removed."""
    try:
        return _start(backup, target, by, as_copy, neutralize)
    except ValidationError:
        if backup.kind == Backup.Kind.UPLOAD:
            store.discard(backup)
        raise


def _start(
    backup: Backup, target: Database | str, by: User | None, as_copy: bool, neutralize: bool
) -> Operation:
    params: dict[str, Any] = {"backup": backup.pk, "as_copy": as_copy, "neutralize": neutralize}
    detail = f"from a backup of {backup.created_at:%Y-%m-%d %H:%M} " + (
        "as a copy" if as_copy else "as moved"
    )
    if isinstance(target, Database):
        with activity.refusals(target, Activity.Kind.RESTORE, by=by, detail=detail):
            check_fits(backup.release, backup.engine, target.engine, f"“{target.name}” is")
            if target.status != Database.Status.ACTIVE:
                raise ValidationError(
                    f"“{target.name}” is being changed and cannot be restored now.", code="busy"
                )
            target.refuse_if_expired()
            growth = max(0, unpacked_size(backup) - target.size_bytes)
            quotas.refuse_growth(target, growth, "This restore")
            params |= {
                "replace": True,
                "old": target.physical_name,
                "physical": lifecycle.new_physical_name(),
            }
            return _begin(target, by, params, detail)
    server = place()
    kind = Database.Engine.POSTGRESQL if server else Database.Engine.SQLITE
    check_fits(backup.release, backup.engine, kind, "new databases here are")
    with transaction.atomic():
        database = lifecycle.reserve(
            target, by=by, engine=kind, server=server, release=backup.release
        )
        params |= {"replace": False, "physical": database.physical_name}
        return _begin(database, by, params, detail)


def _begin(database: Database, by: User | None, params: dict[str, Any], detail: str) -> Operation:
    with transaction.atomic():
        operation = Operation.start("restore", database, by=by, params=params)
        activity.record(
            database, Activity.Kind.RESTORE, by=by, detail=detail,
            result=activity.Result.STARTED, operation=operation,
        )  # fmt: skip
    return operation


def run(operation: Operation) -> None:
    params, database = operation.params, operation.database
    if database is None:
        raise ValidationError("The database to restore into no longer exists.")
    physical, replace = params["physical"], params["replace"]
    if not replace and database.status == Database.Status.ACTIVE:
        _forget_upload(operation)  # opened before a crash ended its worker
        return
    engine = engine_for(database)
    if not (replace and database.physical_name == physical):
        _load(operation, database)
    else:  # swapped, then its worker stopped: finish up
        with engine.held(params["old"]) if engine.exists(params["old"]) else nullcontext():
            _remove_replaced(operation, engine)
    _forget_upload(operation)
    database.refresh_from_db()
    quotas.measure(database)


def _load(operation: Operation, database: Database) -> None:
    params = operation.params
    physical, replace = params["physical"], params["replace"]
    backup = Backup.objects.filter(pk=params["backup"], state=Backup.State.READY).first()
    if backup is None:
        raise ValidationError("The backup to restore is no longer stored.")
    engine = engine_for(database)
    operation.advance(2, "Checking the backup")
    with store.open_file(backup) as file:
        zipped, manifest = read_manifest(file)
        verify(zipped, manifest)
        # A database restored over takes no writes from its automatic backup to the swap:
        # they would be in neither (its readers go on).
        with engine.held(params["old"]) if replace else nullcontext():
            if replace and "saved" not in params:
                operation.advance(20, "Backing up the database first")
                store.make_first(operation, database, Backup.Kind.BEFORE_RESTORE)
            operation.advance(40, "Loading the database")
            with zipped.open("dump.sql") as dump:
                engine.load(physical, dump)
            _check_schema(engine, physical, manifest["release"])
            _check_attachments(database, physical)
            operation.advance(75, "Loading the files")
            filestore.remove(physical)
            for name in manifest["files"]:
                if name.startswith("filestore/"):
                    with zipped.open(name) as member:
                        filestore.store(physical, archive.chunks(member))
            _open(operation, database, manifest)
            if replace:
                _remove_replaced(operation, engine)


def _remove_replaced(operation: Operation, engine: Engine) -> None:
    """Dropped while still held: a request that found the database before the swap has its
    write refused until then, and then finds the database gone (the workspace's page runs it
    again where the database now is); released first, the replaced one would take a write
    that is then dropped with it."""
    operation.advance(97, "Removing the replaced database")
    engine.drop(operation.params["old"])
    filestore.remove(operation.params["old"])


def _open(operation: Operation, database: Database, manifest: dict[str, Any]) -> None:
    """Give the loaded database its identity and users, then put it in service."""
    params = operation.params
    physical, replace = params["physical"], params["replace"]
    operation.advance(85, "Giving the database its identity")
    new_uuid = uuid.uuid4() if params["as_copy"] else uuid.UUID(manifest["uuid"])
    test_copy = params["neutralize"] or database.is_test_copy
    if not replace and operation.created_by is not None:
        Membership.objects.get_or_create(
            database=database, user=operation.created_by, defaults={"role": Membership.Role.ADMIN}
        )
    passwords = None
    if replace:  # read from the database replaced, still in service (held for writes)
        with tenant.using(database, params["old"]) as old:
            passwords = members.database_passwords(old)
    with tenant.using(database, physical) as db:
        # A copy's end is the workspace's to show (its banner); a trial's is the portal's.
        expires_at = database.expires_at if database.source_id else None  # type: ignore[attr-defined]
        tenant.set_identity(db, new_uuid, test_copy, expires_at)
        if test_copy:  # asked for, or restored over a test copy: it stays one, mail off
            tenant.neutralize(db)
        elif params["as_copy"]:
            hold_queued(db)  # the original sends them; an administrator may release them here
        members.link_members(db, database, passwords)
    operation.advance(95, "Opening the database")
    fields = {
        "uuid": new_uuid,
        "release": manifest["release"],
        "is_test_copy": test_copy,
        "size_bytes": engine_for(database).size(physical),
    }
    if replace:
        fields["physical_name"] = physical  # the swap: from now on the database is the new one
    else:
        fields["status"] = Database.Status.ACTIVE
    Database.objects.filter(pk=database.pk).update(**fields)


def _check_schema(engine: Engine, physical: str, release: str) -> None:
    """Only the data may differ from the release's template: a function, trigger, default or
    view added to the dump could run later with the platform's rights."""
    engine.prepare_template(release)
    if engine.schema(physical) != engine.schema(engine.template_name(release)):
        raise ValidationError(
            f"The backup's tables are not those of release {release}: its schema was changed "
            "outside Tenantry, so it cannot be restored."
        )


def _check_attachments(database: Database, physical: str) -> None:
    """An attachment names its file by its SHA-256: one naming anything else was written to
    reach outside the filestore (a path to the platform's secrets)."""
    with tenant.using(database, physical) as db:
        sha256 = f"^{filestore.SHA256.pattern}$"
        if ws.Attachment.objects.using(db).exclude(sha256__regex=sha256).exists():
            raise ValidationError(
                "The backup's attachments do not name their files by checksum: it was changed "
                "outside Tenantry, so it cannot be restored."
            )


def _forget_upload(operation: Operation) -> None:
    backup = Backup.objects.filter(pk=operation.params["backup"], kind=Backup.Kind.UPLOAD).first()
    if backup is not None:
        store.discard(backup)


def undo(operation: Operation) -> None:
    params, database = operation.params, operation.database
    _forget_upload(operation)
    if database is None:
        return
    database.refresh_from_db()  # the swap updates the record, not this copy of it
    if not params["replace"]:
        lifecycle.drop_storage(database)
        database.delete()
        operation.database = None
        return
    if database.physical_name != params["physical"]:
        engine_for(database).drop(params["physical"])
        filestore.remove(params["physical"])
    engine_for(database).release(params["old"])  # if a killed worker held it
    # Once swapped, the restored database is the live one: a failure after that (removing
    # the replaced one) leaves that one behind, never the live one dropped.


KINDS["restore"] = Kind("Restore", run, undo)
