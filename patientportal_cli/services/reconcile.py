"""``patient reconcile FILE|-``: the clinic's patient list (the region's
patientfortegnelse) is the source of truth (issue 15 point 2; docs/rules.md D41).

The list is a CSV file with a ``cpr`` column and an optional ``status`` column holding
the CPR register's status code (read by ``services/importing/reader.py`` with
``LAYOUT``: encodings, delimiters, Danish headers and row limits as ``patient import``).
What each code means here:

==========  =========================================  ==================================
code        CPR register                                 reconcile
==========  =========================================  ==================================
01 03 05 07 active (address in Denmark / Greenland,       on the list: nothing to do
(or empty)  special address)
80          emigrated (udrejst)                          deactivate, reason ``emigrated``
90          deceased (død)                               deactivate, reason ``deceased``
20          inactive (no residence, administrative no.)  kept, reported for review
30 50 60    number annulled / deleted / changed          kept, reported: a new number is a
                                                         ``patient change-cpr``
70          disappeared (forsvundet)                     kept, reported for review
other       (not a CPR status code)                      row rejected
==========  =========================================  ==================================

A code may be written without its leading zero (``1``: Excel drops it).

Phase one (``make_plan``) reads every row and plans, writing nothing:

- a patient linked here who is not on the list: ``left-clinic`` (this clinic's link
  ends; the account and other clinics stay) — unless a row was rejected for its CPR
  number: a list with unreadable numbers cannot tell who is missing from it, so no
  link is ended (``held``) until the list is fixed (D41);
- status 80/90 for a patient linked here: deactivated (already deactivated: nothing);
- a patient linked here and deactivated, but active on the list: reported (staff
  decide whether ``patient reactivate`` is due; reconcile never reactivates);
- a row whose number is not a patient here: reported ("not a patient at clinic X":
  nothing about other clinics or other users is looked up);
- an invalid row (CPR number, status code, the same number twice with different
  codes): rejected, exit 3; a repeat with the same code is counted, not rejected.

A list without one valid row is refused (it would end every link).

Phase two (``apply_plan``) does the changes through ``services/lifecycle.py``
(``lifecycle.deactivate_batch``: the one set of deactivation rules, each change with its
own audit event), ``APPLY_BATCH`` changes per transaction, then one ``patient.reconcile``
event with the counts. A run killed with ``kill -9`` has made whole batches only;
running it again plans only what is left, and a run after a complete one plans nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from patientportal_cli.errors import InvalidInput
from patientportal_cli.services import audit, lifecycle
from patientportal_cli.services.auth import Actor
from patientportal_cli.services.cpr import format_cpr
from patientportal_cli.services.importing.plan import KEEP_TEXT, SHOW_REJECTED, Rejection
from patientportal_cli.services.importing.reader import ImportFile, Layout, RawRow
from patientportal_cli.services.importing.validate import Validator
from patientportal_cli.services.users import current_clinic
from patientportal_cli.vocabulary import Action

LAYOUT = Layout(
    fields=("cpr", "status"),
    required=("cpr",),
    aliases={
        "cpr": "cpr",
        "cprnummer": "cpr",
        "cprnr": "cpr",
        "personnummer": "cpr",
        "status": "status",
        "cprstatus": "status",
        "statuskode": "status",
    },
    accepted="cpr (cpr-nummer, cprnr, personnummer), status (cpr-status, statuskode)",
)

ACTIVE = frozenset({"01", "03", "05", "07", ""})
DEACTIVATE = {"80": lifecycle.EMIGRATED, "90": lifecycle.DECEASED}
REVIEW = {
    "20": "CPR status 20 (inactive, no residence): kept; check the patient's status.",
    "30": "CPR status 30 (number annulled): kept; if the person has a new number, run "
    "`patientportal patient change-cpr OLD NEW`.",
    "50": "CPR status 50 (number deleted): kept; if the person has a new number, run "
    "`patientportal patient change-cpr OLD NEW`.",
    "60": "CPR status 60 (number changed): kept; run `patientportal patient change-cpr OLD NEW` "
    "with the new number.",
    "70": "CPR status 70 (disappeared): kept; check the patient's status.",
}
CODES = "01, 03, 05, 07 (active), 20, 30, 50, 60, 70, 80 (emigrated), 90 (deceased)"
DEACTIVATED_BUT_ACTIVE = (
    "Deactivated here, but active on the list: kept deactivated; if that was a mistake, "
    "run `patientportal patient reactivate CPR`."
)
LEFT_REASON = "Not on the list: this clinic's link ends (left-clinic)."
# one query: this clinic's patients (CPR number, deactivated?)
LINKED_SQL = text(
    "SELECT u.cpr, u.deactivated_at IS NOT NULL FROM clinic_link l "
    "JOIN portal_user u ON u.id = l.user_id WHERE l.clinic_id = :clinic"
)

Progress = Callable[[int], None]


def not_here(clinic_code: str) -> str:
    return f"Not a patient at clinic {clinic_code}: nothing to do here."


@dataclass
class Counts:
    rows: int = 0
    linked: int = 0  # this clinic's patients before the run
    on_list: int = 0  # linked here, active on the list: nothing to do
    deceased: int = 0  # to deactivate
    emigrated: int = 0
    already: int = 0  # 80/90 for a patient already deactivated
    left_clinic: int = 0  # linked here, not on the list: the link ends
    held: int = 0  # left-clinic held back: the list has unreadable CPR numbers
    not_here: int = 0  # reported
    review: int = 0  # reported (status 20/30/50/60/70, or deactivated but active)
    duplicate: int = 0  # the same number again with the same code
    rejected: int = 0

    def to_apply(self) -> int:
        return self.deceased + self.emigrated + self.left_clinic

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Applied:
    deceased: int = 0
    emigrated: int = 0
    left_clinic: int = 0
    delegations_ended: int = 0
    # already done by someone else meanwhile (deactivated, or the link already gone)
    meanwhile: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Plan:
    """Phase one's result. ``rejections`` is the ``--report`` (the rows rejected or
    reported, then the patients whose link would end, as line 0), in the shape
    ``patient import`` writes its report from."""

    source: ImportFile
    clinic_code: str
    counts: Counts = field(default_factory=Counts)
    # (cpr, reason) to deactivate, in file order; then the left-clinic CPR numbers
    deactivate: list[tuple[str, str]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    reported: list[Rejection] = field(default_factory=list)

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def report_rows(self) -> Iterator[Rejection]:
        """What ``--report`` lists (``patient import``'s report writer reads it): the
        rejected and reported rows in line order with their texts, then the patients
        whose link ends, as line 0."""
        rows = sorted(self.rejected + self.reported, key=lambda r: r.line)
        yield from self._with_text(rows)
        for cpr in self.left:
            yield Rejection(0, format_cpr(cpr), LEFT_REASON)

    def rejections(self, *, with_text: bool = False) -> Iterator[Rejection]:
        """The same as ``report_rows`` (``with_text``), or the rows without their texts."""
        if with_text:
            return self.report_rows()
        return iter(sorted(self.rejected + self.reported, key=lambda r: r.line))

    def _with_text(self, rows: list[Rejection]) -> Iterator[Rejection]:
        """Rows whose text was too long to keep are read from the file again, in step."""
        reread: Iterator[RawRow] | None = None
        current: RawRow | None = None
        for row in rows:
            if row.text is None:
                if reread is None:
                    reread = self.source.rows()
                    current = next(reread, None)
                while current is not None and current.line < row.line:
                    current = next(reread, None)
                found = current is not None and current.line == row.line
                text_ = current.text(self.source.delimiter) if found and current else ""
                row = Rejection(row.line, text_, row.reason)
            yield row

    def first_rejected(self, limit: int = SHOW_REJECTED) -> list[Rejection]:
        return sorted(self.rejected, key=lambda r: r.line)[:limit]

    def first_reported(self, limit: int = SHOW_REJECTED) -> list[Rejection]:
        return sorted(self.reported, key=lambda r: r.line)[:limit]


def status_code(value: Any) -> str:
    """The two-digit status code of a cell ("" for none), or InvalidInput."""
    if value is None:
        return ""
    raw = str(value).strip()
    if raw.isdigit() and len(raw) <= 2 and raw.isascii():
        code = raw.zfill(2)
        if code in ACTIVE or code in DEACTIVATE or code in REVIEW:
            return code
    elif not raw:
        return ""
    raise InvalidInput(f"Unknown CPR status {raw[:20]!r}: use {CODES}.")


def make_plan(
    session: Session,
    *,
    actor: Actor,
    source: ImportFile,
    on_progress: Progress | None = None,
    every: int = 20_000,
) -> Plan:
    """Phase one (reads only; ends its read transaction). The caller closes the plan."""
    clinic = current_clinic(session, actor)
    plan = Plan(source=source, clinic_code=clinic.code)
    linked = _linked_here(session, clinic_id=clinic.id)
    plan.counts.linked = len(linked)
    reading = _read_rows(plan, source, on_progress=on_progress, every=every)
    plan.counts.rows = reading.rows
    _classify(plan, reading.first, linked, reading.conflicts)
    _plan_left_clinic(plan, reading, linked)
    plan.counts.rejected = len(plan.rejected)
    if on_progress is not None:
        on_progress(reading.rows)
    if reading.rows == plan.counts.rejected:
        raise InvalidInput(
            f"{source.name} has no valid row: reconciling with it would end every link at "
            f"clinic {clinic.code}. Nothing was changed."
        )
    return plan


@dataclass
class _Reading:
    """What phase one learnt from the rows of the list."""

    first: dict[str, tuple[int, str]]  # cpr -> (line, status code) of its first row
    conflicts: set[str]  # CPR numbers given with two different statuses
    present: set[str]  # on the list with an invalid status: never left-clinic
    bad_numbers: int  # rows whose CPR number could not be read
    rows: int


def _linked_here(session: Session, *, clinic_id: int | None) -> dict[str, bool]:
    """The CPR numbers linked at the clinic (and whether each is deactivated)."""
    found = session.execute(LINKED_SQL, {"clinic": clinic_id})  # type: ignore[call-overload]
    linked: dict[str, bool] = {cpr: bool(off) for cpr, off in found}
    session.rollback()
    return linked


def _read_rows(
    plan: Plan, source: ImportFile, *, on_progress: Progress | None, every: int
) -> _Reading:
    """Every row once: the first status of each CPR number, repeats and conflicts counted,
    unreadable rows rejected. One loop with local names (the list may have 200,000
    rows)."""
    counts, rejected = plan.counts, plan.rejected
    check_cpr = Validator().cpr
    delimiter = source.delimiter
    first: dict[str, tuple[int, str]] = {}
    conflicts: set[str] = set()
    present: set[str] = set()
    codes: dict[Any, str] = {None: ""}  # cell -> status code: a list uses a few values
    bad_numbers = 0
    rows = 0
    for raw in source.rows():
        rows += 1
        if on_progress is not None and rows % every == 0:
            on_progress(rows)
        reason: str
        if raw.error is not None:
            bad_numbers += 1
            reason = raw.error
        else:
            v_cpr, v_status = raw.values
            try:
                cpr = check_cpr(v_cpr)
            except InvalidInput as exc:
                bad_numbers += 1
                reason = str(exc)
            else:
                code = codes.get(v_status)
                if code is None:
                    try:
                        code = codes[v_status] = status_code(v_status)
                    except InvalidInput as exc:
                        present.add(cpr)
                        reason = str(exc)
                if code is not None:
                    before = first.get(cpr)
                    if before is None:
                        first[cpr] = (raw.line, code)
                        continue
                    if before[1] == code:
                        counts.duplicate += 1
                        continue
                    conflicts.add(cpr)
                    reason = CONFLICT
        text_ = raw.text(delimiter)
        rejected.append(Rejection(raw.line, text_ if len(text_) <= KEEP_TEXT else None, reason))
    return _Reading(first, conflicts, present, bad_numbers, rows)


def _plan_left_clinic(plan: Plan, reading: _Reading, linked: dict[str, bool]) -> None:
    """Patients linked here and not on the list leave the clinic, unless a row with an
    unreadable CPR number means the list cannot say who is missing (then they are held)."""
    missing = sorted(
        cpr for cpr in linked if cpr not in reading.first and cpr not in reading.present
    )
    if reading.bad_numbers:
        plan.counts.held = len(missing)
    else:
        plan.left = missing
        plan.counts.left_clinic = len(missing)


CONFLICT = (
    "This CPR number is on several rows with different statuses; none of them is applied. "
    "Keep one row per patient and run again."
)


def _classify(
    plan: Plan, first: dict[str, tuple[int, str]], linked: dict[str, bool], conflicts: set[str]
) -> None:
    """Each number's first row against this clinic's patients. The rows reported keep
    no text (the report reads them from the file again)."""
    counts = plan.counts
    here = not_here(plan.clinic_code)
    reported, deactivate = plan.reported, plan.deactivate
    for cpr, (line, code) in first.items():
        if cpr in conflicts:
            plan.rejected.append(Rejection(line, None, CONFLICT))
            continue
        deactivated = linked.get(cpr)
        if deactivated is None:
            counts.not_here += 1
            reported.append(Rejection(line, None, here))
        elif code in ACTIVE:
            if deactivated:
                counts.review += 1
                reported.append(Rejection(line, None, DEACTIVATED_BUT_ACTIVE))
            else:
                counts.on_list += 1
        elif code in DEACTIVATE:
            if deactivated:
                counts.already += 1
            else:
                deactivate.append((cpr, DEACTIVATE[code]))
                if code == "90":
                    counts.deceased += 1
                else:
                    counts.emigrated += 1
        else:
            counts.review += 1
            reported.append(Rejection(line, None, REVIEW[code]))


APPLY_BATCH = 200  # changes per transaction in phase two


def apply_plan(
    session: Session,
    *,
    actor: Actor,
    plan: Plan,
    on_progress: Progress | None = None,
    batch_size: int = APPLY_BATCH,
) -> Applied:
    """Phase two: the planned changes through ``lifecycle.deactivate_batch`` (the one set
    of deactivation rules; one audit event per change), ``batch_size`` changes per
    transaction; then one ``patient.reconcile`` event with the counts. A batch that
    fails (a database error) is rolled back whole and the run stops there: the batches
    before it are done, and running the list again does the rest. Progress is told after
    each commit: what it counts is done."""
    applied = Applied()
    work = [*plan.deactivate, *((cpr, lifecycle.LEFT_CLINIC) for cpr in plan.left)]
    done = 0
    for start in range(0, len(work), batch_size):
        batch = work[start : start + batch_size]
        outcomes = lifecycle.deactivate_batch(session, actor=actor, changes=batch)
        session.commit()
        for (_cpr, reason), outcome in zip(batch, outcomes, strict=True):
            _count(applied, reason, outcome)
        done += len(batch)
        if on_progress is not None:
            on_progress(done)
    audit.record(
        session,
        actor=actor.username,
        clinic=plan.clinic_code,
        action=Action.PATIENT_RECONCILE,
        target=f"clinic:{plan.clinic_code}",
        details={"source": plan.source.name, "plan": plan.counts.as_dict(), **applied.as_dict()},
    )
    session.commit()
    return applied


def _count(applied: Applied, reason: str, outcome: lifecycle.Outcome | None) -> None:
    if outcome is None or outcome.result == lifecycle.ALREADY:
        applied.meanwhile += 1  # unlinked or deactivated meanwhile
        return
    if reason == lifecycle.LEFT_CLINIC:
        applied.left_clinic += 1
    elif reason == lifecycle.DECEASED:
        applied.deceased += 1
    else:
        applied.emigrated += 1
    applied.delegations_ended += outcome.delegations
