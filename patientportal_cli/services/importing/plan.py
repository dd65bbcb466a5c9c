"""Phase one of a bulk import: read every row, check it, classify it against the database.

Memory stays bounded whatever the file's size:

- Pass A streams the file once. A valid row is written, in batches, to a private (0600)
  spool file (pickled tuples) that pass B and phase two read back; an invalid row goes
  to a temporary rejection file. Each valid row also leaves 8 bytes in an array: its CPR
  and a 30-bit fingerprint of its data, from which the same CPR appearing twice is found
  after the pass (same data: a harmless duplicate; different data: every such row is
  rejected, as nobody can tell which one is right).
- Pass B reads the spool in batches and classifies each batch with one query (users by
  CPR with their link to this clinic): create, link an existing user, set the no-MitID
  flag on an existing link, already there (nothing to do), or rejected.

The spool files live in a directory of their own inside ``spool_dir`` (the CLI passes
its per-run directory under HOME/spool; only library use without one falls back to the
system's temporary directory), removed when the plan is closed.

Nothing is written to the database in phase one. Its counts are the plan; phase two
(``apply.py``) classifies each batch again inside the batch's transaction, so whatever
changed in between (another run, a crash) is taken into account.
"""

from __future__ import annotations

import heapq
import pickle
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from sqlmodel import Session

from patientportal_cli import files
from patientportal_cli.db.models import Clinic, ClinicLink, PortalUser
from patientportal_cli.errors import InvalidInput
from patientportal_cli.services import catalog, shared_email, users
from patientportal_cli.services.importing import BATCH_SIZE, bulk, validate
from patientportal_cli.services.importing.reader import ImportFile, RawRow

SHOW_REJECTED = 10
KEEP_TEXT = 4096  # a longer rejected row is not kept; the report reads it again
_FP_BITS = 30
_FP_MASK = (1 << _FP_BITS) - 1

# a checked row, as spooled: (line, cpr, name, email, no_mitid, services|None)
LINE: Final = 0
CPR: Final = 1
NAME: Final = 2
EMAIL: Final = 3
FLAG: Final = 4
SERVICES: Final = 5
Row = tuple[int, str, str, str, bool, str | None]

CREATE, LINK, SET_FLAG, ALREADY = "create", "link", "set_flag", "already"

T_USER = PortalUser.__table__  # type: ignore[attr-defined]
T_LINK = ClinicLink.__table__  # type: ignore[attr-defined]

FLAG_NEEDS_CONFIRMATION = (
    "The no-MitID flag needs --confirm-email-owner: confirm for the file that each "
    "flagged patient's e-mail address belongs to the patient or to a person with power of "
    "attorney (R6)."
)


@dataclass
class Context:
    clinic_id: int
    clinic_code: str
    clinic_name: str
    offered: list[str]
    actor: str
    confirm_email_owner: bool
    invite: bool
    source: str


@dataclass
class Counts:
    rows: int = 0
    create: int = 0
    link: int = 0
    set_flag: int = 0
    already: int = 0
    duplicate: int = 0
    rejected: int = 0
    differences: int = 0
    # rows to create or link whose e-mail other patients here have (not refused, D31)
    shared_email: int = 0

    def to_apply(self) -> int:
        return self.create + self.link + self.set_flag


@dataclass
class Rejection:
    """A rejected row; ``text`` (the row as in the file) is None when not kept, and
    ``Plan.rejections(with_text=True)`` reads it from the file again."""

    line: int
    text: str | None
    reason: str


@dataclass
class Existing:
    user_id: int
    name: str
    email: str
    link_id: int | None
    no_mitid: bool
    deactivated: bool = False  # services/lifecycle.py: it gets no new link (D46)


@dataclass
class Classified:
    """A batch sorted into what to do; ``existing`` maps CPR -> what the database has."""

    create: list[Row] = field(default_factory=list)
    link: list[Row] = field(default_factory=list)
    set_flag: list[Row] = field(default_factory=list)
    already: list[Row] = field(default_factory=list)
    rejected: list[tuple[Row, str]] = field(default_factory=list)
    existing: dict[str, Existing] = field(default_factory=dict)
    differences: int = 0
    # rows to create or link -> the e-mail their portal user will have (lower case)
    emails: dict[int, str] = field(default_factory=dict)


Progress = Callable[[int], None]


class Plan:
    """The checked file: counts, rejections, and the spool of valid rows."""

    def __init__(
        self,
        source: ImportFile,
        ctx: Context,
        batch_size: int = BATCH_SIZE,
        *,
        spool_dir: Path | None = None,
    ) -> None:
        self.source = source
        self.ctx = ctx
        self.batch_size = batch_size
        self.counts = Counts()
        self.conflicts: dict[str, int] = {}  # CPR -> rows with it (different data)
        self.repeated: set[str] = set()  # CPRs that appear more than once with the same data
        self._dir = Path(tempfile.mkdtemp(prefix="patientportal-import-", dir=spool_dir))
        self.spool = self._dir / "rows.pickle"
        self._rejects = [self._dir / "rejected-a.pickle", self._dir / "rejected-b.pickle"]
        self.late_rejections: list[Rejection] = []  # found in phase two
        # rows not refused whose e-mail other patients here have (line order; for --report)
        self.shared: list[Rejection] = []
        self._file_emails: dict[str, int] = {}  # e-mails of earlier rows to create or link
        self.rejected_lines: set[int] = set()  # valid rows rejected by classification

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
        self.source.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading back -----------------------------------------------------------------
    def batches(self) -> Iterator[list[Row]]:
        """The valid rows, in file order, without later repeats of the same data."""
        seen: set[str] = set()
        for batch in _load_all(self.spool):
            keep: list[Row] = []
            for row in batch:
                cpr = row[CPR]
                if cpr in self.conflicts or row[LINE] in self.rejected_lines:
                    continue
                if cpr in self.repeated:
                    if cpr in seen:
                        continue
                    seen.add(cpr)
                keep.append(row)
            yield keep

    def rejections(self, *, with_text: bool = False) -> Iterator[Rejection]:
        """Every rejected row, in line order (``with_text``: with the row's text)."""
        if not with_text:
            return self._merged()
        return self._with_text(self._merged())

    def report_rows(self) -> Iterator[Rejection]:
        """What --report lists, in line order with the rows' texts: the rejected rows and
        the rows with an e-mail other patients here have (``shared``), not refused."""
        both = heapq.merge(self._merged(), iter(self.shared), key=lambda r: r.line)
        return self._with_text(both)

    def _with_text(self, stream: Iterator[Rejection]) -> Iterator[Rejection]:
        """The rejections with their texts; one not kept is read from the file again, in
        step with the rejections (both in line order), so one row at a time is held."""
        delimiter = self.source.delimiter
        rows: Iterator[RawRow] | None = None
        current: RawRow | None = None
        for rejection in stream:
            if rejection.text is None:
                if rows is None:
                    rows = self.source.rows()
                    current = next(rows, None)
                while current is not None and current.line < rejection.line:
                    current = next(rows, None)
                text = ""
                if current is not None and current.line == rejection.line:
                    text = current.text(delimiter)
                rejection = Rejection(rejection.line, text, rejection.reason)
            yield rejection

    def _merged(self) -> Iterator[Rejection]:
        streams: list[Iterator[Rejection]] = [_flatten(_load_all(p)) for p in self._rejects]
        streams.append(iter(sorted(self.late_rejections, key=lambda r: r.line)))
        return heapq.merge(*streams, key=lambda r: r.line)

    def first_rejections(self, limit: int = SHOW_REJECTED) -> list[Rejection]:
        result = []
        for rejection in self.rejections():
            result.append(rejection)
            if len(result) >= limit:
                break
        return result


def _load_all(path: Path) -> Iterator[Any]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        while True:
            try:
                yield pickle.load(handle)
            except EOFError:
                return


def _flatten(batches: Iterator[list[Rejection]]) -> Iterator[Rejection]:
    for batch in batches:
        yield from batch


class _Sink:
    """Batched pickles into a file."""

    def __init__(self, path: Path, size: int) -> None:
        self.handle: IO[bytes] = files.open_private(path, "wb", follow=False, exclusive=True)
        self.size = size
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.items:
            pickle.dump(self.items, self.handle, protocol=pickle.HIGHEST_PROTOCOL)
            self.items = []

    def close(self) -> None:
        self.flush()
        self.handle.close()


def context(
    session: Session,
    *,
    clinic_id: int,
    actor: str,
    confirm_email_owner: bool,
    invite: bool,
    source: str,
) -> Context:
    clinic = session.get(Clinic, clinic_id)
    if clinic is None:  # pragma: no cover - the actor was resolved from this row
        raise InvalidInput("The clinic does not exist.")
    return Context(
        clinic_id=clinic_id,
        clinic_code=clinic.code,
        clinic_name=clinic.name,
        offered=catalog.split_services(clinic.services),
        actor=actor,
        confirm_email_owner=confirm_email_owner,
        invite=invite,
        source=source,
    )


def make_plan(
    session: Session,
    *,
    source: ImportFile,
    ctx: Context,
    batch_size: int = BATCH_SIZE,
    on_progress: Progress | None = None,
    spool_dir: Path | None = None,
) -> Plan:
    """Phase one. The caller closes the plan (it owns ``source`` from here on).
    ``spool_dir``: where the spool files go (the CLI's HOME/spool run directory)."""
    plan = Plan(source, ctx, batch_size, spool_dir=spool_dir)
    try:
        _pass_a(plan, on_progress)
        _pass_b(session, plan, on_progress)
    except BaseException:
        plan.close()
        raise
    return plan


def _pass_a(plan: Plan, on_progress: Progress | None) -> None:
    """Read and check every row; spool the valid ones; find repeated CPRs."""
    checker = validate.Validator()
    check_cpr, check_name, check_email = checker.cpr, checker.name, checker.email
    check_flag, check_services = validate.flag, validate.services
    offered = plan.ctx.offered
    delimiter = plan.source.delimiter
    spool = _Sink(plan.spool, plan.batch_size)
    pending = spool.items
    size = plan.batch_size
    rejects = _Sink(plan._rejects[0], 1000)
    packed = array("q")
    remember = packed.append
    counts = plan.counts
    rows = 0
    try:
        for raw in plan.source.rows():
            rows += 1
            if raw.error is None:
                v_cpr, v_name, v_email, v_flag, v_services = raw.values
                try:
                    cpr = check_cpr(v_cpr)
                    name = check_name(v_name)
                    email = check_email(v_email)
                    no_mitid = check_flag(v_flag)
                    granted = check_services(v_services, offered)
                except InvalidInput as exc:
                    reason = str(exc)
                else:
                    pending.append((raw.line, cpr, name, email, no_mitid, granted))
                    remember(
                        int(cpr) << _FP_BITS
                        | hash((name, email.casefold(), no_mitid, granted)) & _FP_MASK
                    )
                    if len(pending) >= size:
                        spool.flush()
                        pending = spool.items
                        if on_progress is not None:
                            on_progress(rows)
                    continue
            else:
                reason = raw.error
            counts.rejected += 1
            text = raw.text(delimiter)  # a long one is read again for the report
            rejects.add(Rejection(raw.line, text if len(text) <= KEEP_TEXT else None, reason))
    finally:
        counts.rows = rows
        spool.close()
        rejects.close()
    _find_repeats(plan, packed)


def _find_repeats(plan: Plan, packed: array[int]) -> None:
    ordered = sorted(packed)
    del packed
    run_cpr, run_fp, run_len, run_mixed = -1, -1, 0, False

    def close_run() -> None:
        if run_len > 1:
            key = f"{run_cpr:010d}"
            if run_mixed:
                plan.conflicts[key] = run_len
            else:
                plan.repeated.add(key)

    for value in ordered:
        cpr, fp = value >> _FP_BITS, value & _FP_MASK
        if cpr == run_cpr:
            run_len += 1
            if fp != run_fp:
                run_mixed = True
            continue
        close_run()
        run_cpr, run_fp, run_len, run_mixed = cpr, fp, 1, False
    close_run()


def _pass_b(session: Session, plan: Plan, on_progress: Progress | None) -> None:
    """Classify the valid rows against the database (read only)."""
    counts = plan.counts
    rejects = _Sink(plan._rejects[1], 1000)
    seen: set[str] = set()
    done = 0
    try:
        for batch in _load_all(plan.spool):
            keep: list[Row] = []
            found: list[Rejection] = []
            for row in batch:
                cpr = row[CPR]
                if cpr in plan.conflicts:
                    found.append(Rejection(row[LINE], None, conflict_reason(plan, cpr)))
                elif cpr in plan.repeated and cpr in seen:
                    counts.duplicate += 1
                else:
                    if cpr in plan.repeated:
                        seen.add(cpr)
                    keep.append(row)
            result = classify(session, plan.ctx, keep)
            session.rollback()  # read only: do not hold the SQLite write lock
            counts.create += len(result.create)
            counts.link += len(result.link)
            counts.set_flag += len(result.set_flag)
            counts.already += len(result.already)
            counts.differences += result.differences
            _note_shared(session, plan, result)
            for row, reason in result.rejected:
                plan.rejected_lines.add(row[LINE])
                found.append(Rejection(row[LINE], None, reason))
            found.sort(key=lambda r: r.line)
            counts.rejected += len(found)
            for rejection in found:
                rejects.add(rejection)
            done += len(batch)
            if on_progress is not None:
                on_progress(done)
    finally:
        rejects.close()


def _note_shared(session: Session, plan: Plan, result: Classified) -> None:
    """Count and note the rows to create or link whose e-mail other patients linked here
    have, or earlier rows of the file to create or link (``services/shared_email.py``)."""
    if not result.emails:
        return
    linked = dict(
        bulk.select_by_cpr(
            session, bulk.SHARED_EMAIL_SQL, plan.ctx.clinic_id, sorted(set(result.emails.values()))
        )
    )
    for line, email in sorted(result.emails.items()):
        others = int(linked.get(email, 0)) + plan._file_emails.get(email, 0)
        plan._file_emails[email] = plan._file_emails.get(email, 0) + 1
        if others:
            plan.counts.shared_email += 1
            plan.shared.append(
                Rejection(line, None, f"not refused: {shared_email.warning(others)}")
            )


def conflict_reason(plan: Plan, cpr: str) -> str:
    return (
        f"This CPR number is on {plan.conflicts[cpr]} rows of the file with different data; "
        "none of them is imported. Keep one row per patient and import the file again."
    )


def classify(session: Session, ctx: Context, rows: list[Row]) -> Classified:
    """Sort a batch of checked rows (distinct CPRs) by what the import does with each."""
    result = Classified()
    if not rows:
        return result
    existing = {
        cpr: Existing(uid, name, email, link_id, bool(flag), bool(off))
        for cpr, uid, name, email, link_id, flag, off in bulk.select_by_cpr(
            session, bulk.EXISTING_SQL, ctx.clinic_id, [r[CPR] for r in rows]
        )
    }
    result.existing = existing
    confirm = ctx.confirm_email_owner
    for row in rows:
        found = existing.get(row[CPR])
        wants_flag = row[FLAG]
        if found is None:
            if wants_flag and not confirm:
                result.rejected.append((row, FLAG_NEEDS_CONFIRMATION))
            else:
                result.create.append(row)
                result.emails[row[LINE]] = row[EMAIL].lower()
            continue
        if found.link_id is not None and (not wants_flag or found.no_mitid):
            result.already.append(row)
            continue
        if found.link_id is None and found.deactivated:
            result.rejected.append((row, users.NOT_ACTIVE_LINK))
            continue
        if wants_flag:
            if not confirm:
                result.rejected.append((row, FLAG_NEEDS_CONFIRMATION))
                continue
            if found.email.casefold() != row[EMAIL].casefold():
                result.rejected.append(
                    (
                        row,
                        f"The portal user with this CPR number has another e-mail "
                        f"than the row ({row[EMAIL]}); security codes go "
                        "to the user's e-mail, so the no-MitID flag cannot be confirmed for "
                        "the address given. Import the row without the flag, check the "
                        "address with the patient, then run `patientportal no-mitid set CPR`.",
                    )
                )
                continue
        if found.link_id is None:
            result.link.append(row)
            result.emails[row[LINE]] = found.email.lower()
            if found.name != row[NAME] or found.email.casefold() != row[EMAIL].casefold():
                result.differences += 1
        else:
            result.set_flag.append(row)
    return result
