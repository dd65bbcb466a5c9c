"""The import's fast validation paths give exactly the general validators' answers; the
bulk audit chain gives exactly ``record``'s hashes; bulk activation codes."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patientportal_cli.errors import InvalidInput
from patientportal_cli.services import audit, codes
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.cpr import normalize_cpr
from patientportal_cli.services.importing import validate

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(func, value):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    try:
        return ("ok", func(value))
    except InvalidInput as exc:
        return ("error", str(exc))


cpr_like = st.one_of(
    st.builds(
        lambda d, m, y, s, sep: f"{d:02d}{m:02d}{y:02d}{sep}{s:04d}",
        st.integers(0, 32),
        st.integers(0, 13),
        st.integers(0, 99),
        st.integers(0, 9999),
        st.sampled_from(["", "-", " ", "--"]),
    ),
    st.text(max_size=14),
)


@FAST
@given(cpr_like, st.sampled_from(["", " ", "\t"]))
def test_cpr_fast_path_equals_normalize_cpr(value: str, pad: str) -> None:
    text = pad + value + pad
    assert outcome(validate.Validator().cpr, text) == outcome(normalize_cpr, text)


def test_cpr_every_century_digit_and_leap_days() -> None:
    checker = validate.Validator()
    for yy in range(100):
        for digit in range(10):
            for day in ("2902", "0101", "3112"):
                text = f"{day}{yy:02d}-{digit}123"
                assert outcome(checker.cpr, text) == outcome(normalize_cpr, text), text


email_like = st.one_of(
    st.emails(),
    st.builds(
        lambda a, b, c: f"{a}@{b}.{c}",
        st.from_regex(r"[A-Za-z0-9._%+-]{0,70}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9-]{0,70}", fullmatch=True),
        st.sampled_from(["dk", "DK", "com", "test", "invalid", "d", "xn--strm-ura"]),
    ),
    st.text(max_size=30),
)


@FAST
@given(email_like, st.sampled_from(["", " "]))
def test_email_fast_path_equals_normalize_email(value: str, pad: str) -> None:
    text = pad + value + pad
    assert outcome(validate.Validator().email, text) == outcome(normalize_email, text)


def test_email_domain_cache_remembers_bad_domains() -> None:
    checker = validate.Validator()
    for _ in range(2):
        assert outcome(checker.email, "a@b.test") == outcome(normalize_email, "a@b.test")
    assert checker.email("Ida.Hansen@Example.DK") == "Ida.Hansen@example.dk"


@FAST
@given(st.text(max_size=30) | st.sampled_from(["  Søren  Ærø ", "e\u0301", "x" * 201, "[b]x"]))
def test_name_fast_path_equals_clean_name(value: str) -> None:
    assert outcome(validate.Validator.name, value) == outcome(clean_name, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", False),
        (None, False),
        ("ja", True),
        ("JA", True),
        (" x ", True),
        ("1", True),
        ("yes", True),
        ("nej", False),
        ("0", False),
        ("no", False),
        (True, True),
        (0, False),
    ],
)
def test_flag_words(value: object, expected: bool) -> None:
    assert validate.flag(value) is expected


def test_flag_refuses_other_words() -> None:
    with pytest.raises(InvalidInput, match="Invalid no-MitID value 'måske'"):
        validate.flag("måske")


def test_services_column() -> None:
    offered = ["e-consultation", "booking"]
    assert validate.services("", offered) is None
    assert validate.services("Booking, E-konsultation", offered) == "e-consultation,booking"
    assert validate.services(["booking"], offered) == "booking"
    assert validate.services("tidsbestilling|booking", offered) == "booking"
    with pytest.raises(InvalidInput, match="does not offer prescription-renewal"):
        validate.services("receptfornyelse", offered)
    with pytest.raises(InvalidInput, match="Unknown service 'x-ray'"):
        validate.services("x-ray", offered)


# --- the audit chain ----------------------------------------------------------------------

text_values = st.text(
    st.characters(blacklist_categories=["Cs"]), max_size=20
)  # any text JSON can carry

TRICKY = ["", "|", "a|b", "3:abc", "Søren Ørsted", "emoji 🎉", '"quoted"\\', "x" * 64]


def test_bulk_chain_gives_record_hashes(db_url: str, home: object) -> None:
    """``chain`` (the import's path) hashes exactly as ``record`` and ``digest`` do, for
    tricky texts (length prefixes keep 'a|b' + 'c' apart from 'a' + 'b|c'), across two
    chains, and ``verify`` accepts the mix."""
    from pathlib import Path

    from sqlmodel import Session, col, select

    from patientportal_cli.db import engine as engine_mod
    from patientportal_cli.db import migrate
    from patientportal_cli.db.models import AuditEvent

    engine = engine_mod.get_engine(db_url, Path(str(home)))
    migrate.upgrade(engine)
    events = [
        {"actor": a, "clinic": c, "action": t or "x", "target": t, "details": {"v": a}}
        for a in TRICKY
        for t in TRICKY[:4]
        for c in ("NORD", None)
    ]
    with Session(engine) as s:
        audit.record(s, actor="anna", clinic="NORD", action="first")
        assert audit.record_many(s, events) == len(events)
        audit.record(s, actor="a|b", clinic=None, action="c", target="t|", details={"k": "|"})
        s.commit()
        rows = list(s.exec(select(AuditEvent).order_by(col(AuditEvent.id))))
        assert [r.seq for r in rows if r.chain == "NORD"] == list(range(1, len(events) // 2 + 2))
        for row in rows:
            assert audit.digest(row) == row.hash, row
        report = audit.verify(s, chains=["NORD", ""], full=True)
        assert report.problems == [] and report.checked == len(events) + 2


@FAST
@given(
    text_values,
    st.integers(1, 10**7),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(["e-consultation", "booking"]), unique=True),
    st.sampled_from([[], ["email"], ["name"], ["email", "name"]]),
    text_values,
)
def test_import_details_json_equals_json_dumps(
    email: str,
    line: int,
    flag: bool,
    invited: bool,
    created: bool,
    services: list[str],
    differences: list[str],
    file: str,
) -> None:
    """apply.py writes the patient.create details directly; same text as json.dumps."""
    from patientportal_cli.services.importing.apply import create_details

    enc = audit.encode_json_string
    row = (line, "0102031234", "Name", email, flag, None)
    built = create_details(
        json.dumps(differences) if differences else "[]",
        enc(file),
        invited,
        row,
        ", ".join(enc(s) for s in services),
        created,
    )
    expected = {
        "differences": differences,
        "file": file,
        "invited": invited,
        "line": line,
        "no_mitid": flag,
        "record_email": email,
        "services": services,
        "source": "import",
        "user_created": created,
    }
    assert built == json.dumps(expected, ensure_ascii=False, sort_keys=True)


def test_activation_codes_carry_80_bits_and_store_only_a_hash() -> None:
    seen = {codes._new_code(codes.ACTIVATION) for _ in range(500)}
    assert len(seen) == 500
    for code in seen:
        assert re.fullmatch(r"[A-HJ-NP-Z2-9]{4}(?:-[A-HJ-NP-Z2-9]{4}){3}", code)
        stored = codes._hash(codes.ACTIVATION, code)
        assert code.replace("-", "") not in stored
        assert codes._matches(codes.ACTIVATION, stored, code.lower().replace("-", " "))
    security = codes._new_code(codes.LOGIN)
    stored = codes._hash(codes.LOGIN, security)
    assert stored.startswith("$argon2id$") and security not in stored
    assert codes._matches(codes.LOGIN, stored, security)
    assert not codes._matches(codes.LOGIN, stored, f"{(int(security) + 1) % 10**6:06d}")
