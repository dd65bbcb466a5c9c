"""mail queue | send | test ADDRESS, and ``send_queued`` for the commands that send mail.

Mail is written to the outbox in the same transaction as the change that causes it;
right after the commit the command calls ``send_queued``, which delivers the queue
(Maildir by default, or SMTP). A failed delivery never undoes the change: the message
stays queued with its error, one warning line is printed, and ``mail send`` retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from patientportal_cli.cli.common import (
    Fmt,
    OutputOpt,
    command,
    config,
    database,
    debug,
    home,
    out,
    staff_session,
)

if TYPE_CHECKING:
    from patientportal_cli.output import Output
    from patientportal_cli.services.mail.delivery import MailSettings

app = typer.Typer(
    help="Patient e-mail: the outbox queue, retrying delivery, and a test message.",
    no_args_is_help=True,
)

RETRY_HINT = "run `patientportal mail send`."


def mail_settings() -> MailSettings:
    """The delivery settings from config.toml (and the keyring, only when logging in)."""
    from patientportal_cli import keystore
    from patientportal_cli.services.mail import delivery

    cfg = config()
    here = home()

    def password() -> str | None:
        return keystore.get("smtp-password", here)

    return delivery.MailSettings(
        transport=delivery.check_transport(cfg.get("mail-transport")),
        maildir=here / "maildir",
        sender=(cfg.get("mail-from") or "").strip() or delivery.DEFAULT_FROM,
        smtp_host=(cfg.get("smtp-host") or "").strip() or None,
        smtp_port=delivery.parse_port(cfg.get("smtp-port")),
        smtp_starttls=delivery.parse_yes_no(
            cfg.get("smtp-starttls"), key="smtp-starttls", default=True
        ),
        smtp_username=(cfg.get("smtp-username") or "").strip() or None,
        smtp_password=password,
    )


def _emails(n: int) -> str:
    return f"{n} e-mail" if n == 1 else f"{n} e-mails"


def _failure_text(failed: int, errors: list[str]) -> str:
    reason = errors[0] if errors else "unknown error"
    if len(errors) > 1:
        reason += f"; and {len(errors) - 1} other error{'s' if len(errors) > 2 else ''}"
    stays = "it stays queued" if failed == 1 else "they stay queued"
    return f"{_emails(failed)} could not be sent ({reason}); {stays}: {RETRY_HINT}"


def send_queued(
    output: Output | None = None, *, clinic: str | None, quiet: bool = False
) -> tuple[int, int]:
    """Deliver ``clinic``'s queued mail now (None: every clinic's, for the demo); call
    it right AFTER the change was committed.

    Returns (sent, failed). Never raises and never undoes anything: a failure leaves
    the messages queued and prints one warning line on stderr (unless ``quiet``: then
    the caller reports the failure itself from the returned count).
    """
    from patientportal_cli.services.mail import delivery

    output = output or out()
    try:
        settings = mail_settings()
        with database() as session:
            sent, failed, errors = delivery.deliver(session, settings=settings, clinic_code=clinic)
    except Exception as exc:  # the change is committed; mail trouble must not hide that
        if debug():
            raise
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not quiet:
            output.warn(f"e-mail could not be sent ({text}); it stays queued: {RETRY_HINT}")
        return 0, 1
    if failed and not quiet:
        output.warn(_failure_text(failed, errors))
    return sent, failed


def queue_row(message: Any) -> dict[str, Any]:
    return {
        "id": message.id,
        "created_at": message.created_at,
        "recipient": message.recipient,
        "subject": message.subject,
        "template": message.template,
        "attempts": message.attempts,
        "error": message.error,
    }


QUEUE_COLUMNS = [
    ("id", "Id"),
    ("created_at", "Created"),
    ("recipient", "Recipient"),
    ("subject", "Subject"),
    ("attempts", "Attempts"),
    ("error", "Last error"),
]


@command(app, "queue")
def queue(fmt: OutputOpt = Fmt.table) -> None:
    """List this clinic's e-mails waiting to be sent, with their last error."""
    from patientportal_cli.services.mail import outbox

    output = out(fmt)
    with staff_session(output) as (session, actor):
        clinic_id, _code = actor.require_clinic()
        mine = outbox.queued(session, clinic_id=clinic_id, legacy=actor.may_create_clinics)
        rows = [queue_row(m) for m in mine]
    output.rows(rows, QUEUE_COLUMNS, title="Queued e-mail", empty="No e-mail is queued.")


@command(app, "send")
def send() -> None:
    """Deliver this clinic's queued e-mail now (exit 1 if any still fails)."""
    from patientportal_cli.errors import MailError
    from patientportal_cli.services.mail import delivery

    output = out()
    settings = mail_settings()
    with staff_session(output) as (session, actor):
        _clinic_id, code = actor.require_clinic()
        sent, failed, errors = delivery.deliver(
            session, settings=settings, clinic_code=code, legacy=actor.may_create_clinics
        )
    if not sent and not failed:
        output.message("No e-mail is queued.")
        return
    if sent:
        output.success(f"Sent {_emails(sent)} ({settings.describe()}).")
    if failed:
        raise MailError(_failure_text(failed, errors))


@command(app, "test")
def test(
    address: Annotated[str, typer.Argument(help="Where to send the test message.")],
) -> None:
    """Send a test message now through the configured transport (not via the queue)."""
    from patientportal_cli.services import contact
    from patientportal_cli.services.mail import delivery, texts

    with staff_session() as (_session, _actor):
        pass  # a staff login is required; the message itself does not touch the database
    recipient = contact.normalize_email(address)
    settings = mail_settings()
    subject, body = texts.transport_test()
    delivery.send_now(settings=settings, to=recipient, subject=subject, body=body)
    out().success(f"Test e-mail sent to {recipient} ({settings.describe()}).")
