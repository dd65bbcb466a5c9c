"""Phase two of a bulk import: apply the plan in batches, each batch one transaction.

A batch is classified again inside its transaction (so a re-run, or a run after a
crash, only does what is still missing) and then written with one multi-row statement
per table: users (ids taken up front: under SQLite's write lock from max(id), on
PostgreSQL from the table's sequence), links, link history, no-MitID flags, activation
codes, outbox mail, and one audit event per change (``audit.record_many``: same hash
chain, same lock). The batch commits as a whole or not at all, so a killed run leaves no
user without its link and no change without its audit event; running the same command
again finishes the job.

Two runs creating the same CPR at the same moment (PostgreSQL): the batch that loses
fails on the unique CPR; it is rolled back and done again row by row, each row in its
own transaction, so the winner's users are linked instead (R1).

Choices mirror the single-patient commands (``services/patients.py``, ``nomitid.py``):
an activation code is mailed only to a user the import created (not with
``invite=False``); linking an existing user sends nothing and never changes its name or
e-mail (differences are counted and audited); setting the flag stores who confirmed the
e-mail owner and when, and mails the patient about it; a flag is never cleared by an
import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlmodel import Session

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import AuditEvent, LinkHistory, OneTimeCode, Outbox
from patientportal_cli.services import audit, codes
from patientportal_cli.services.audit import encode_json_string
from patientportal_cli.services.importing import bulk
from patientportal_cli.services.importing.bulk import Writer
from patientportal_cli.services.importing.plan import (
    CPR,
    EMAIL,
    FLAG,
    LINE,
    NAME,
    SERVICES,
    T_LINK,
    T_USER,
    Classified,
    Context,
    Existing,
    Plan,
    Rejection,
    Row,
    classify,
)
from patientportal_cli.services.mail import texts
from patientportal_cli.services.nomitid import STATEMENT
from patientportal_cli.vocabulary import Action

T_HISTORY = LinkHistory.__table__  # type: ignore[attr-defined]
T_CODE = OneTimeCode.__table__  # type: ignore[attr-defined]
T_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
T_AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]


@dataclass
class Applied:
    created: int = 0
    linked: int = 0
    flags_set: int = 0  # every flag set: on links made by the import and on existing ones
    flags_on_existing: int = 0  # of those, on links that were there before
    already: int = 0
    rejected: int = 0
    invitations: int = 0
    mails: int = 0
    batches: int = 0
    fallback_batches: int = 0

    def changed(self) -> int:
        return self.created + self.linked + self.flags_on_existing


def apply_plan(
    session: Session, plan: Plan, *, on_progress: Callable[[int], None] | None = None
) -> Applied:
    """Phase two. Commits batch by batch; ends with a ``patient.import`` audit event."""
    total = Applied()
    done = 0
    integrity = bulk.integrity_errors(session)
    bulk.tune_for_bulk(session)
    session.rollback()
    for batch in plan.batches():
        if batch:
            try:
                _apply_batch(session, plan, batch, total)
                session.commit()
            except integrity:
                session.rollback()
                total.fallback_batches += 1
                _row_by_row(session, plan, batch, total, integrity)
            total.batches += 1
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
    _summary_event(session, plan, total)
    session.commit()
    return total


def _row_by_row(
    session: Session,
    plan: Plan,
    batch: list[Row],
    total: Applied,
    integrity: tuple[type[BaseException], ...],
) -> None:
    for row in batch:
        for attempt in (1, 2):
            try:
                _apply_batch(session, plan, [row], total)
                session.commit()
                break
            except integrity:
                session.rollback()
                if attempt == 2:
                    total.rejected += 1
                    plan.late_rejections.append(
                        Rejection(
                            row[LINE],
                            None,
                            "A concurrent change to this patient got in the way; import "
                            "the row again.",
                        )
                    )


@dataclass
class _Batch:
    """What the steps of one batch share, in one transaction: the rows ``classify``
    sorted, the moment and the writer, the user id of each CPR (filled in as users are
    made), the outbox rows the steps queue, and the run's totals."""

    session: Session
    ctx: Context
    found: Classified
    now: datetime
    writer: Writer
    total: Applied
    user_ids: dict[str, int]
    mail_at: Any  # the outbox rows' created_at, as the writer sends it
    mails: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def default_services(self) -> str:
        return ",".join(self.ctx.offered)

    def to_link(self) -> list[Row]:
        return self.found.create + self.found.link

    def flagged(self) -> list[Row]:
        """Rows that set the no-MitID flag: new links with it, then existing links."""
        return [r for r in self.to_link() if r[FLAG]] + self.found.set_flag

    def flag_owner(self, row: Row) -> tuple[Existing | None, str, str]:
        """(the user as the database has it, the e-mail and name the flag confirms)."""
        known = self.found.existing.get(row[CPR])
        if known is None:
            return None, row[EMAIL], row[NAME]
        return known, known.email, known.name


def _apply_batch(session: Session, plan: Plan, rows: list[Row], total: Applied) -> None:
    """Classify ``rows`` again in this transaction, then write what is still to do:
    users, links, flags, codes, mail, audit."""
    batch = _start(session, plan, rows, total)
    if batch is None:
        return
    _create_users(batch)
    _create_links(batch)
    _flag_existing_links(batch)
    _vouch_flagged_users(batch)
    _queue_invitations(batch)
    _queue_flag_mails(batch)
    _write_mail(batch)
    _write_audit(batch, _link_events(batch) + _flag_events(batch))
    total.created += len(batch.found.create)
    total.linked += len(batch.found.link)
    total.flags_set += len(batch.flagged())
    total.flags_on_existing += len(batch.found.set_flag)


def _start(session: Session, plan: Plan, rows: list[Row], total: Applied) -> _Batch | None:
    """Classify the rows in this transaction and count what is rejected or already done;
    None when nothing is left to write."""
    ctx = plan.ctx
    found = classify(session, ctx, rows)
    now = utcnow()
    for row, reason in found.rejected:
        total.rejected += 1
        plan.late_rejections.append(Rejection(row[LINE], None, reason))
    total.already += len(found.already)
    if not (found.create or found.link or found.set_flag):
        return None
    writer = Writer(session)
    if writer.postgresql:
        # the batch needs no WAL flush of its own at commit: a crash could only lose the
        # last moment's batches, which a re-run redoes; their e-mails are sent after the
        # import, whose later synchronous commits flush everything before them
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    return _Batch(
        session=session,
        ctx=ctx,
        found=found,
        now=now,
        writer=writer,
        total=total,
        user_ids={cpr: e.user_id for cpr, e in found.existing.items()},
        mail_at=writer.time(T_OUTBOX, "created_at", now),
    )


def _create_users(batch: _Batch) -> None:
    """The new users, with ids taken up front."""
    create = batch.found.create
    if not create:
        return
    ids = _new_ids(batch.session, len(create))
    created_at = batch.writer.time(T_USER, "created_at", batch.now)
    batch.writer.insert(
        T_USER,
        USER_COLUMNS,
        [
            (uid, row[CPR], row[NAME], row[EMAIL], "clinic", 0, created_at, created_at)
            for uid, row in zip(ids, create, strict=True)
        ],
    )
    user_ids = batch.user_ids
    for uid, row in zip(ids, create, strict=True):
        user_ids[row[CPR]] = uid


def _create_links(batch: _Batch) -> None:
    """The links (with the flag where the row has it), and the link history."""
    to_link = batch.to_link()
    if not to_link:
        return
    ctx, writer, existing, user_ids = batch.ctx, batch.writer, batch.found.existing, batch.user_ids
    default_services = batch.default_services
    actor = ctx.actor
    at = writer.time(T_LINK, "linked_at", batch.now)
    link_rows = []
    for row in to_link:
        services = default_services if row[SERVICES] is None else row[SERVICES]
        if row[FLAG]:
            known = existing.get(row[CPR])
            confirmed = known.email if known is not None else row[EMAIL]
            flag_values: tuple[Any, ...] = (True, at, actor, at, actor, confirmed)
        else:
            flag_values = (False, None, None, None, None, None)
        link_rows.append(
            (ctx.clinic_id, user_ids[row[CPR]], at, actor, *flag_values, row[EMAIL], services)
        )
    writer.insert(T_LINK, LINK_COLUMNS, link_rows)
    _remember(batch.session, writer, ctx.clinic_id, [row[CPR] for row in to_link], batch.now)


def _flag_existing_links(batch: _Batch) -> None:
    """The flag on links the clinic already has."""
    set_flag, existing = batch.found.set_flag, batch.found.existing
    if not set_flag:
        return
    batch.session.execute(
        update(T_LINK)
        .where(T_LINK.c.id == bindparam("link_id"))
        .values(
            no_mitid=True,
            no_mitid_changed_at=bindparam("at"),
            no_mitid_changed_by=bindparam("by"),
            email_owner_confirmed_at=bindparam("at"),
            email_owner_confirmed_by=bindparam("by"),
            email_owner_confirmed_email=bindparam("confirmed"),
        ),
        [
            {
                "link_id": existing[row[CPR]].link_id,
                "at": batch.now,
                "by": batch.ctx.actor,
                "confirmed": existing[row[CPR]].email,
            }
            for row in set_flag
        ],
    )


def _vouch_flagged_users(batch: _Batch) -> None:
    """The flag confirms the user's own e-mail (rows with another address were
    rejected): it vouches for credentials an existing user chose at self-registration."""
    found = batch.found
    flagged_existing = [
        found.existing[row[CPR]].user_id for row in found.link + found.set_flag if row[FLAG]
    ]
    if flagged_existing:
        batch.session.execute(
            update(T_USER)
            .where(
                T_USER.c.id == bindparam("user_id"),
                T_USER.c.credentials_vouched_at.is_(None),
            )
            .values(credentials_vouched_at=bindparam("at")),
            [{"user_id": uid, "at": batch.now} for uid in flagged_existing],
        )


def _queue_invitations(batch: _Batch) -> None:
    """An activation mail to each user the import created (unless ``invite`` is off):
    the intent only, each code is made when its e-mail is delivered."""
    ctx, create = batch.ctx, batch.found.create
    if not (ctx.invite and create):
        return
    activation = _intent(ctx, "activation")
    user_ids, mail_at = batch.user_ids, batch.mail_at
    batch.mails.extend(
        (row[EMAIL], *activation(row[NAME]), user_ids[row[CPR]], ctx.clinic_id, mail_at, 0)
        for row in create
    )
    batch.total.invitations += len(create)


def _queue_flag_mails(batch: _Batch) -> None:
    """A mail to the patient about each flag set, at the address it confirms."""
    flag_mail = _intent(batch.ctx, "no_mitid_set")
    user_ids, clinic_id, mail_at = batch.user_ids, batch.ctx.clinic_id, batch.mail_at
    for row in batch.flagged():
        _, email, name = batch.flag_owner(row)
        batch.mails.append((email, *flag_mail(name), user_ids.get(row[CPR]), clinic_id, mail_at, 0))


def _write_mail(batch: _Batch) -> None:
    batch.writer.insert(T_OUTBOX, OUTBOX_COLUMNS, batch.mails)
    batch.total.mails += len(batch.mails)


def _link_events(batch: _Batch) -> list[dict[str, Any]]:
    """A ``patient.create`` event per user created, then per user linked."""
    ctx, found = batch.ctx, batch.found
    existing = found.existing
    actor, clinic, invite = ctx.actor, ctx.clinic_code, ctx.invite
    default_services = batch.default_services
    target_file = encode_json_string(ctx.source)
    services_json: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    for created, group in ((True, found.create), (False, found.link)):
        for row in group:
            differences = "[]" if created else _differences(existing[row[CPR]], row)
            services = default_services if row[SERVICES] is None else row[SERVICES]
            granted = services_json.get(services)
            if granted is None:
                granted = services_json[services] = ", ".join(
                    encode_json_string(s) for s in services.split(",") if s
                )
            # json.dumps(details, ensure_ascii=False, sort_keys=True), built directly
            details = create_details(
                differences, target_file, created and invite, row, granted, created
            )
            events.append(
                {
                    "actor": actor,
                    "clinic": clinic,
                    "action": Action.PATIENT_CREATE,
                    "target": f"cpr:{row[CPR]}",
                    "details_json": details,
                }
            )
    return events


def _differences(known: Existing, row: Row) -> str:
    """Which fields differ, as JSON, never the stored values (the user was another
    clinic's patient until this import linked it)."""
    diff: list[str] = []
    if known.email.casefold() != row[EMAIL].casefold():
        diff.append("email")
    if known.name != row[NAME]:
        diff.append("name")
    return json.dumps(diff) if diff else "[]"


def _flag_events(batch: _Batch) -> list[dict[str, Any]]:
    """A ``nomitid.set`` event per flag set."""
    ctx = batch.ctx
    actor = ctx.actor
    stamp = batch.now.isoformat()
    events: list[dict[str, Any]] = []
    for row in batch.flagged():
        known, email, _ = batch.flag_owner(row)
        events.append(
            {
                "actor": actor,
                "clinic": ctx.clinic_code,
                "action": Action.NO_MITID_SET,
                "target": f"cpr:{row[CPR]}",
                "details": {
                    "email_owner_confirmed_by": actor,
                    "email_owner_confirmed_at": stamp,
                    "email": email,
                    "record_email": row[EMAIL] if known is None or known.link_id is None else None,
                    "confirmed": STATEMENT,
                    "line": row[LINE],
                    "source": "import",
                    "file": ctx.source,
                },
            }
        )
    return events


def _write_audit(batch: _Batch, events: list[dict[str, Any]]) -> None:
    """The events on their chains (``audit.chain`` locks the heads), in one insert."""
    audit_rows = audit.chain(batch.session, events)
    if audit_rows:
        at = batch.writer.time(T_AUDIT, "at", audit_rows[0][0])
        batch.writer.insert(T_AUDIT, audit.CHAIN_COLUMNS, [(at, *r[1:]) for r in audit_rows])


# a user the clinic creates has vouched-for credentials (services/users.py)
USER_COLUMNS = (
    "id",
    "cpr",
    "name",
    "email",
    "origin",
    "failed_logins",
    "created_at",
    "credentials_vouched_at",
)
LINK_COLUMNS = (
    "clinic_id",
    "user_id",
    "linked_at",
    "linked_by",
    "no_mitid",
    "no_mitid_changed_at",
    "no_mitid_changed_by",
    "email_owner_confirmed_at",
    "email_owner_confirmed_by",
    "email_owner_confirmed_email",
    "record_email",
    "services",
)
_JSON_BOOL = {True: "true", False: "false"}


def create_details(
    differences: str, file_json: str, invited: bool, row: Row, services_json: str, created: bool
) -> str:
    """The ``patient.create`` event's details as ``json.dumps(..., ensure_ascii=False,
    sort_keys=True)`` writes them, built directly (``differences``, ``file_json`` and
    ``services_json`` already JSON); a test checks the two agree."""
    return (
        f'{{"differences": {differences}, "file": {file_json}, '
        f'"invited": {_JSON_BOOL[invited]}, "line": {row[LINE]}, '
        f'"no_mitid": {_JSON_BOOL[row[FLAG]]}, '
        f'"record_email": {encode_json_string(row[EMAIL])}, '
        f'"services": [{services_json}], "source": "import", '
        f'"user_created": {_JSON_BOOL[created]}}}'
    )


OUTBOX_COLUMNS = (
    "recipient",
    "subject",
    "template",
    "args",
    "user_id",
    "clinic_id",
    "created_at",
    "attempts",
)


def _intent(ctx: Any, template: str) -> Callable[[str], tuple[str, str, str]]:
    """(subject, template, args as JSON) of one clinic's ``template`` for a patient's
    name: the JSON is written once with a marker and filled in per patient, as
    ``outbox.enqueue`` would write it."""
    args: dict[str, Any] = {"name": _MARK_NAME, "clinic_name": ctx.clinic_name}
    if template == "activation":
        args.update(valid_days=codes.LIFETIME[codes.ACTIVATION].days, clinic_code=ctx.clinic_code)
    subject, _ = texts.render(template, args)
    pattern = json.dumps(args, ensure_ascii=False, sort_keys=True)
    head, _, tail = pattern.partition(encode_json_string(_MARK_NAME))

    def fill(name: str) -> tuple[str, str, str]:
        return subject, template, f"{head}{encode_json_string(name)}{tail}"

    return fill


_MARK_NAME = "\u27e6name\u27e7"


def _new_ids(session: Session, count: int) -> list[int]:
    """Ids for new portal users; safe because the batch holds the write lock (SQLite)
    or takes them from the sequence (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('portal_user', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return [int(r[0]) for r in rows]
    top = session.execute(select(func.coalesce(func.max(T_USER.c.id), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))


def _remember(
    session: Session, writer: Writer, clinic_id: int, cprs: list[str], now: datetime
) -> None:
    """link_history: a row per (clinic, CPR) ever linked; a re-link clears unlinked_at."""
    known = dict(bulk.select_by_cpr(session, bulk.HISTORY_SQL, clinic_id, cprs))
    at = writer.time(T_HISTORY, "first_linked_at", now)
    writer.insert(
        T_HISTORY,
        ("clinic_id", "cpr", "first_linked_at"),
        [(clinic_id, cpr, at) for cpr in cprs if cpr not in known],
    )
    again = [cpr for cpr in cprs if known.get(cpr) is not None]
    if again:
        session.execute(
            update(T_HISTORY)
            .where(T_HISTORY.c.clinic_id == clinic_id, T_HISTORY.c.cpr.in_(again))
            .values(unlinked_at=None)
        )


def _summary_event(session: Session, plan: Plan, total: Applied) -> None:
    ctx = plan.ctx
    counts = plan.counts
    audit.record(
        session,
        actor=ctx.actor,
        clinic=ctx.clinic_code,
        action=Action.PATIENT_IMPORT,
        target=f"file:{ctx.source}"[:200],
        details={
            "rows": counts.rows,
            "created": total.created,
            "linked": total.linked,
            "flags_set": total.flags_set,
            "already": total.already,
            "duplicates": counts.duplicate,
            "rejected": counts.rejected + total.rejected,
            "invitations": total.invitations,
            "confirm_email_owner": ctx.confirm_email_owner,
            "email_owner_statement": STATEMENT if ctx.confirm_email_owner else None,
        },
    )
