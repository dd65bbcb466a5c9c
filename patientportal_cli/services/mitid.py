"""MitID, behind one interface.

The portal asks a MitID broker to confirm that the person logging in owns a CPR number.
This program has no broker: ``SimulatedMitId`` stands in for one and confirms every
valid CPR number at once (it is for demos, support and end-to-end tests). A real
integration (a certified MitID broker speaking OpenID Connect) would be another class
with the same ``verify`` method, returned by ``broker()``; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from patientportal_cli.services.cpr import normalize_cpr


@dataclass(frozen=True)
class MitIdResult:
    """The broker's answer: did the person prove that they own ``cpr``?"""

    verified: bool
    cpr: str
    reason: str = ""
    broker: str = ""


class MitIdBroker(Protocol):
    """Confirms a person's identity (their CPR number) with MitID."""

    name: str

    def verify(self, cpr: str) -> MitIdResult: ...


class SimulatedMitId:
    """Accepts any valid CPR number (no real identity check: a stand-in for a broker)."""

    name = "simulated"

    def verify(self, cpr: str) -> MitIdResult:
        number = normalize_cpr(cpr)
        return MitIdResult(verified=True, cpr=number, broker=self.name)


def broker() -> MitIdBroker:
    """The broker in use. A real MitID integration would be returned here."""
    return SimulatedMitId()
