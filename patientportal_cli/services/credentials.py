"""Vouching for a patient's password and e-mail (``portal_user.credentials_vouched_at``).

Anyone who knows a CPR number can self-register it with a password and an e-mail of
their choosing. Those credentials are usable for two-factor login only once they are
vouched for (``services/login_rules.py``):

- a clinic created the user (``services/users.py``, the import): the clinic typed the
  e-mail, and the password is chosen with an activation code sent to it;
- the registration itself was made inside a MitID login (``portal register --login
  mitid``): the person who proved to be the patient chose them;
- the patient confirms or replaces them inside a later MitID login (here);
- a clinic sets the no-MitID flag, confirming that the e-mail belongs to the patient
  (``services/nomitid.py``, the import).

A MitID login alone vouches for nothing: the patient logging in with MitID has not said
that the password and e-mail someone chose in their name are theirs. So after a MitID
login of a user whose credentials are not vouched for, the patient is asked
(``Question``) and answers (``Answer``): confirm them, replace them (a new e-mail and a
new password, both vouched for at once; the old password and every pending code end),
or decide later (two-factor login stays closed).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from patientportal_cli.db.clock import utcnow
from patientportal_cli.db.models import Clinic, PortalUser
from patientportal_cli.errors import Conflict, InvalidInput
from patientportal_cli.services import audit, passwords
from patientportal_cli.services.contact import normalize_email
from patientportal_cli.services.mail import outbox
from patientportal_cli.services.masking import mask_email
from patientportal_cli.vocabulary import Action

CONFIRM = "confirm"
REPLACE = "replace"
LATER = "later"
ANSWERS = (CONFIRM, REPLACE, LATER)


@dataclass(frozen=True)
class Question:
    """What the patient is asked, inside their MitID login."""

    email: str  # masked: enough to recognise one's own address
    has_password: bool


@dataclass(frozen=True)
class Answer:
    """``action``: confirm | replace (with ``email`` and ``password``) | later."""

    action: str
    email: str | None = None
    password: str | None = None

    def checked(self) -> Answer:
        """The answer with its new e-mail normalised and its password policy checked."""
        if self.action not in ANSWERS:
            raise InvalidInput(f"Unknown answer {self.action!r}: use {', '.join(ANSWERS)}.")
        if self.action != REPLACE:
            return self
        if self.email is None or self.password is None:
            raise InvalidInput("Replacing the credentials needs a new e-mail and a new password.")
        passwords.check_policy(self.password)
        return Answer(REPLACE, normalize_email(self.email), self.password)


def unvouched(user: PortalUser) -> bool:
    return user.credentials_vouched_at is None


def question(user: PortalUser) -> Question:
    return Question(email=mask_email(user.email), has_password=bool(user.password_hash))


def apply(
    session: Session, *, user: PortalUser, clinic: Clinic, asked: Question, answer: Answer
) -> None:
    """Record the patient's answer, given inside the MitID login just made (no commit).

    ``asked``: the question the answer is to; a confirmation of an e-mail that changed
    since it was shown is refused (Conflict), the patient logs in again.
    """
    answer = answer.checked()
    if answer.action == LATER:
        return
    assert user.id is not None
    now = utcnow()
    details: dict[str, object] = {"method": "mitid"}
    if answer.action == CONFIRM:
        if question(user) != asked:
            raise Conflict(
                "Your password or e-mail changed while you were asked: log in with MitID "
                "again to confirm them."
            )
        action = Action.PORTAL_CREDENTIALS_CONFIRMED
    else:
        assert answer.email is not None and answer.password is not None
        details["email_changed"] = user.email.casefold() != answer.email.casefold()
        user.email = answer.email
        user.password_hash = passwords.hash_password(answer.password)
        outbox.end_pending_codes(
            session, user_id=user.id, reason="the patient replaced the password and e-mail"
        )
        action = Action.PORTAL_CREDENTIALS_REPLACED
    user.credentials_vouched_at = now
    session.add(user)
    audit.record(
        session,
        actor="patient",
        clinic=clinic.code,
        action=action,
        target=f"cpr:{user.cpr}",
        details=details,
    )
