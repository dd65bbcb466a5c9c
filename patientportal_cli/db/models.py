"""SQLModel tables (Alembic owns the schema: change a table here, then add a migration).

Times are naive UTC datetimes everywhere (``patientportal_cli.db.clock.utcnow``).
CPR numbers are stored normalised as 10-digit text. Lists of services are stored as
comma-separated service names (see ``services/catalog.py``).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict
from sqlalchemy import Column, Index, SmallInteger, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from patientportal_cli.db.clock import utcnow
from patientportal_cli.vocabulary import RequestStatus


class Model(SQLModel):
    """The base of every model here. Pydantic builds a model's validator the first time
    it validates one, not at import: table rows are constructed without validation, so
    a command never pays for it (about a tenth of importing this module)."""

    model_config = ConfigDict(defer_build=True)  # type: ignore[assignment]  # merged with SQLModel's


# --- clinics -------------------------------------------------------------------------


class ClinicBase(Model):
    code: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=200)
    registration_mode: str = Field(default="none", max_length=16)
    services: str = Field(default="", max_length=200)


class Clinic(ClinicBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)


class ClinicPublic(ClinicBase):
    created_at: datetime


# --- staff ---------------------------------------------------------------------------


class StaffBase(Model):
    username: str = Field(max_length=64, unique=True, index=True)
    full_name: str = Field(max_length=200)


class Staff(StaffBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=200)
    active: bool = Field(default=True)
    may_create_clinics: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class Membership(Model, table=True):
    __table_args__ = (UniqueConstraint("staff_id", "clinic_id"),)
    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    clinic_id: int = Field(foreign_key="clinic.id", index=True)
    role: str = Field(max_length=64)  # one role, or several: "admin,doctor"


class ApiToken(Model, table=True):
    """A login session (kind 'session', 12 h) or a named API token (kind 'api')."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    kind: str = Field(default="session", max_length=16)
    name: str = Field(default="", max_length=100)
    clinic_id: int | None = Field(default=None, foreign_key="clinic.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


# --- patients ------------------------------------------------------------------------


class PortalUser(Model, table=True):
    __tablename__ = "portal_user"
    # patient list pages in (name, id) order (migration 0006)
    __table_args__ = (
        Index("ix_portal_user_name_id", "name", "id"),
        # shared e-mail look-ups, case-insensitive (migration 0008)
        Index("ix_portal_user_email_lower", text("lower(email)")),
    )
    id: int | None = Field(default=None, primary_key=True)
    cpr: str = Field(max_length=10, unique=True, index=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    password_hash: str | None = Field(default=None, max_length=200)
    origin: str = Field(default="clinic", max_length=16)
    mitid_verified_at: datetime | None = None
    failed_logins: int = Field(default=0)
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # when the password and e-mail became usable for two-factor login (see migration
    # 0004 and services/portal.py); None: chosen at self-registration, not yet vouched
    credentials_vouched_at: datetime | None = None
    # deactivated accounts cannot log in anywhere (migration 0008, services/lifecycle.py)
    deactivated_at: datetime | None = None
    deactivated_reason: str | None = Field(default=None, max_length=16)
    deactivated_by: str | None = Field(default=None, max_length=64)
    # the last successful portal login, MitID or two-factor (migration 0008)
    last_login_at: datetime | None = None


class ClinicLink(Model, table=True):
    __tablename__ = "clinic_link"
    __table_args__ = (UniqueConstraint("clinic_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    clinic_id: int = Field(foreign_key="clinic.id", index=True)
    user_id: int = Field(foreign_key="portal_user.id", index=True)
    linked_at: datetime = Field(default_factory=utcnow)
    linked_by: str = Field(default="", max_length=64)
    no_mitid: bool = Field(default=False)
    no_mitid_changed_at: datetime | None = None
    no_mitid_changed_by: str | None = Field(default=None, max_length=64)
    email_owner_confirmed_at: datetime | None = None
    email_owner_confirmed_by: str | None = Field(default=None, max_length=64)
    email_owner_confirmed_email: str | None = Field(default=None, max_length=320)
    mitid_required_after: datetime | None = None
    record_email: str | None = Field(default=None, max_length=320)
    services: str = Field(default="", max_length=200)


class LinkHistory(Model, table=True):
    """One row per (clinic, CPR) that was ever linked; lets the queue mark 'linked before'."""

    __tablename__ = "link_history"
    __table_args__ = (UniqueConstraint("clinic_id", "cpr"),)
    id: int | None = Field(default=None, primary_key=True)
    clinic_id: int = Field(foreign_key="clinic.id", index=True)
    cpr: str = Field(max_length=10)
    first_linked_at: datetime = Field(default_factory=utcnow)
    unlinked_at: datetime | None = None


class RegistrationRequest(Model, table=True):
    __tablename__ = "registration_request"
    id: int | None = Field(default=None, primary_key=True)
    clinic_id: int = Field(foreign_key="clinic.id", index=True)
    cpr: str = Field(max_length=10, index=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=320)
    password_hash: str | None = Field(default=None, max_length=200)
    services: str = Field(default="", max_length=200)
    submitted_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default=RequestStatus.PENDING, max_length=16, index=True)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # set when the request was made inside a MitID login (portal register --login mitid)
    mitid_verified_at: datetime | None = None


class OneTimeCode(Model, table=True):
    __tablename__ = "one_time_code"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="portal_user.id", index=True)
    clinic_id: int | None = Field(default=None, foreign_key="clinic.id")
    purpose: str = Field(max_length=16)
    code_hash: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    attempts: int = Field(default=0)
    used_at: datetime | None = None
    # security codes: sha256 of the attempt id given to whoever passed the password step
    attempt_hash: str | None = Field(default=None, max_length=64)


class LoginThrottle(Model, table=True):
    """Failed logins and the lock per login name (sha256 of "staff:NAME" or
    "patient:CPR"), for names that exist and names that do not alike."""

    __tablename__ = "login_throttle"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True, index=True)
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    locked_until: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


# --- mail and audit ------------------------------------------------------------------


class Outbox(Model, table=True):
    """A queued e-mail as its intent: the text (and any code in it) is made at delivery.

    ``args`` are the template's non-secret arguments as JSON, emptied once sent; ``body``
    is only set on messages queued before schema revision 0003.
    """

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=320)
    subject: str = Field(max_length=300)
    template: str = Field(max_length=64)
    args: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))
    user_id: int | None = None
    clinic_id: int | None = Field(default=None, foreign_key="clinic.id", index=True)
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = Field(default=None, index=True)
    discarded_at: datetime | None = None
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AuditEvent(Model, table=True):
    """Append-only, one hash chain per clinic plus one (``chain`` "") for events of no
    clinic; ``seq`` counts the chain's events from 1. Version 2: ``hash`` = sha256 over
    the event's fields, ``content_hash`` (which covers ``target`` and ``details`` with a
    per-event ``salt``, so they can be erased) and ``prev_hash``. Version 1: the events
    written before schema 0005, one global chain in id order (see services/audit.py)."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_chain_seq", "chain", "seq", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=64)
    clinic: str | None = Field(default=None, max_length=32, index=True)
    action: str = Field(max_length=64, index=True)
    target: str = Field(default="", max_length=200)
    details: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    chain: str = Field(default="", max_length=32)
    seq: int = Field(default=0)
    version: int = Field(default=2, sa_column=Column(SmallInteger, nullable=False))
    salt: str | None = Field(default=None, max_length=32)
    content_hash: str | None = Field(default=None, max_length=64)


class AuditHead(Model, table=True):
    """The newest event of each chain; writers lock their chain's row (not the table)."""

    __tablename__ = "audit_head"
    chain: str = Field(max_length=32, primary_key=True)
    seq: int = Field(default=0)
    hash: str = Field(max_length=64)
    updated_at: datetime = Field(default_factory=utcnow)


class AuditCheckpoint(Model, table=True):
    """A chain's (seq, hash) at a moment, signed with HMAC-SHA256 under the audit key
    (kept outside the database); ``key_id`` names the key without revealing it. A prune
    checkpoint (``kind`` "prune") is the chain's floor: the events up to it were removed."""

    __tablename__ = "audit_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=32, index=True)
    seq: int
    hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    signature: str = Field(max_length=64)
    # "prune" (migration 0009, services/retention.py): the chain's events up to and
    # including ``seq`` were removed; ``hash`` is the last removed event's, so the first
    # remaining event still links to it. ``cutoff``/``removed``: what the run did.
    kind: str = Field(
        default="checkpoint", max_length=16, sa_column_kwargs={"server_default": "checkpoint"}
    )
    cutoff: datetime | None = None
    removed: int | None = None


# --- acting for someone else ---------------------------------------------------------


class Delegation(Model, table=True):
    """One person may act for another at one clinic (services/delegations.py): a guardian
    of a child under 15 (``valid_until`` None: the end is the child's 15th birthday,
    computed from the CPR number at every check) or a proxy under a fuldmagt (until
    ``valid_until``). ``services`` None: all the clinic offers. A revoked or removed row
    is kept (``revoked_at``); at most one open row per (clinic, patient, holder, kind)."""

    __tablename__ = "delegation"
    __table_args__ = (
        Index("ix_delegation_clinic_patient", "clinic_id", "patient_user_id"),
        Index("ix_delegation_clinic_holder", "clinic_id", "holder_user_id"),
        Index(
            "ux_delegation_open",
            "clinic_id",
            "patient_user_id",
            "holder_user_id",
            "kind",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    clinic_id: int = Field(foreign_key="clinic.id")
    patient_user_id: int = Field(foreign_key="portal_user.id")
    holder_user_id: int = Field(foreign_key="portal_user.id")
    kind: str = Field(max_length=16)  # vocabulary.DelegationKind
    basis: str = Field(max_length=32)  # vocabulary.Basis
    services: str | None = Field(default=None, max_length=200)
    evidence: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    valid_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=64)
    notice_sent_at: datetime | None = None


class CprChange(Model, table=True):
    """One CPR number change of a portal user (``patient change-cpr``, migration 0008):
    both numbers then find the person."""

    __tablename__ = "cpr_change"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="portal_user.id", index=True)
    old_cpr: str = Field(max_length=10, index=True)
    new_cpr: str = Field(max_length=10, index=True)
    changed_at: datetime = Field(default_factory=utcnow)
    changed_by: str = Field(max_length=64)
    merged: bool = Field(default=False)


class AuditVerifyRun(Model, table=True):
    """One ``audit verify`` run over one clinic's chain (migration 0010): when, by whom,
    how many events it hashed, and the result, for ``clinic overview``. Kept outside the
    chains, so recording a run never changes what the next run checks; a record, not a
    proof (services/audit/runs.py)."""

    __tablename__ = "audit_verify_run"
    __table_args__ = (Index("ix_audit_verify_run_chain_id", "chain", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    chain: str = Field(max_length=32)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=64)
    result: str = Field(max_length=16)  # "intact" or "failed"
    checked: int = Field(default=0)
    full: bool = Field(default=False)
    problem: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
