"""housekeeping: the periodic work, meant for cron (see the README's crontab line)."""

from __future__ import annotations

from patientportal_cli.cli.common import database, out


def housekeeping() -> None:
    """Queue the notices that are due and send the mail queue (run it daily from cron).

    Each guardian whose access to a child ends within 30 days (the child's 15th birthday)
    and who has not been told yet gets a Danish notice e-mail, once. Every clinic's queued
    mail is then delivered, as `mail send` does. Needs no staff login: it acts as
    `patientportal` and changes nothing a person chose.
    """
    from patientportal_cli.cli.mail import send_queued
    from patientportal_cli.services import delegations

    output = out()
    with database() as session:
        queued = delegations.queue_notices(session)
    sent, failed = send_queued(output, clinic=None, quiet=True)
    notices = "1 guardian notice" if queued == 1 else f"{queued} guardian notices"
    mails = "1 e-mail" if sent == 1 else f"{sent} e-mails"
    output.success(f"Housekeeping done: queued {notices}; sent {mails}.")
    if failed:
        from patientportal_cli.errors import MailError

        raise MailError(
            f"{failed} e-mail{'s' if failed != 1 else ''} could not be sent; they stay queued: "
            "run `patientportal housekeeping` or `patientportal mail send` again."
        )
