"""Validation of CPR numbers, e-mail addresses and names (no database, no CLI)."""

from __future__ import annotations

import datetime
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.dk import cpr as stdnum_cpr

from patientportal_cli.errors import EXIT_USAGE, InvalidInput
from patientportal_cli.services.contact import clean_name, normalize_email
from patientportal_cli.services.cpr import birth_date, format_cpr, normalize_cpr

TODAY = datetime.date.today()
FIRST_DATE = datetime.date(1858, 1, 1)
SEPARATORS = ("-", "", " ")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def century_digits(year: int) -> list[str]:
    """The 7th digits that put a two-digit year YY into ``year``'s century.

    Written from docs/rules.md (D3), independently of the implementation:
    0-3 -> 1900s; 4 or 9 -> 2000s if YY <= 36 else 1900s; 5-8 -> 2000s if YY <= 57
    else 1800s.
    """
    yy = year % 100
    digits: list[str] = []
    if 1900 <= year <= 1999:
        digits += ["0", "1", "2", "3"]
        if yy >= 37:
            digits += ["4", "9"]
    elif 2000 <= year <= 2099:
        if yy <= 36:
            digits += ["4", "9"]
        if yy <= 57:
            digits += ["5", "6", "7", "8"]
    elif 1800 <= year <= 1899 and yy >= 58:
        digits += ["5", "6", "7", "8"]
    return digits


def cpr_for(day: datetime.date, serial: str) -> str:
    return f"{day:%d%m%y}{serial}"


def refused(text: str, **kwargs: datetime.date) -> str:
    with pytest.raises(InvalidInput) as info:
        normalize_cpr(text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == EXIT_USAGE
    return message


# ------------------------------------------------------------------ CPR: valid numbers


def test_century_rule_table_matches_design() -> None:
    """Every (7th digit, YY) pair maps to the century the design says (or is refused)."""
    for digit in "0123456789":
        for yy in range(100):
            number = f"0101{yy:02d}{digit}000"
            expected = [
                century + yy
                for century in (1800, 1900, 2000)
                if digit in century_digits(century + yy)
            ]
            assert len(expected) <= 1, (digit, yy)
            if not expected:
                # 5-8 with YY <= 57 is 2000-2057; the rest always has a century.
                pytest.fail(f"no century for digit {digit}, YY {yy}")
            assert birth_date(number) == datetime.date(expected[0], 1, 1), (digit, yy)
            if expected[0] <= TODAY.year - 1:
                assert normalize_cpr(number, today=TODAY) == number


def test_every_date_since_1858_round_trips() -> None:
    """Exhaustive over dates: each day 1858-01-01..today, with a rotating valid serial."""
    day = FIRST_DATE
    step = datetime.timedelta(days=1)
    count = 0
    while day <= TODAY:
        digits = century_digits(day.year)
        serial = digits[count % len(digits)] + f"{(count * 7919) % 1000:03d}"
        number = cpr_for(day, serial)
        sep = SEPARATORS[count % 3]
        assert normalize_cpr(f"{number[:6]}{sep}{number[6:]}", today=TODAY) == number
        assert birth_date(number) == day
        day += step
        count += 1
    assert count > 60_000


@FAST
@given(
    day=st.dates(min_value=FIRST_DATE, max_value=TODAY),
    rest=st.integers(min_value=0, max_value=999),
    data=st.data(),
)
def test_valid_cpr_round_trips(day: datetime.date, rest: int, data: st.DataObject) -> None:
    digit = data.draw(st.sampled_from(century_digits(day.year)), label="7th digit")
    number = cpr_for(day, f"{digit}{rest:03d}")
    for sep in SEPARATORS:
        padding = data.draw(st.sampled_from(["", " ", "\t", "  \n"]), label="padding")
        text = f"{padding}{number[:6]}{sep}{number[6:]}{padding}"
        assert normalize_cpr(text, today=TODAY) == number
    assert birth_date(number) == day
    assert format_cpr(number) == f"{number[:6]}-{number[6:]}"
    assert normalize_cpr(format_cpr(number), today=TODAY) == number


def test_modulus_11_is_not_required() -> None:
    number = "0102031235"
    assert stdnum_cpr.checksum(number) != 0  # fails the old modulus-11 check
    assert normalize_cpr("010203-1235") == number
    # and one that passes it is of course fine too
    assert stdnum_cpr.checksum("2110625629") == 0
    assert normalize_cpr("211062-5629") == "2110625629"


def test_specific_valid_numbers() -> None:
    assert normalize_cpr("  010203-1234 ") == "0102031234"
    assert normalize_cpr("010203 1234") == "0102031234"
    assert normalize_cpr("0102031234") == "0102031234"
    assert birth_date("0102031234") == datetime.date(1903, 2, 1)
    assert birth_date("0102034234") == datetime.date(2003, 2, 1)
    assert birth_date("0102584234") == datetime.date(1958, 2, 1)
    assert birth_date("0102585234") == datetime.date(1858, 2, 1)
    assert birth_date("0102575234") == datetime.date(2057, 2, 1)
    # 2000 was a leap year, 1900 was not: the century decides.
    assert normalize_cpr("290200-4123") == "2902004123"
    assert birth_date("2902004123") == datetime.date(2000, 2, 29)
    # born today is fine
    day = datetime.date(2024, 3, 5)
    assert normalize_cpr("050324-4000", today=day) == "0503244000"
    assert format_cpr("0102031234") == "010203-1234"


# ---------------------------------------------------------------- CPR: invalid numbers


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "010203-123",
        "010203-12345",
        "01020-31234",
        "010203--1234",
        "010203  1234",
        "010203_1234",
        "01 02 03 1234",
        "0102-03-1234",
        "-0102031234",
        "010203\n1234",
        "0" * 10_000,
        "010203.1234",
        "+4512345678",
    ],
)
def test_wrong_shape_is_refused(text: str) -> None:
    message = refused(text)
    assert "DDMMYY-SSSS" in message


@pytest.mark.parametrize(
    "text", ["010203-12A4", "010203-ABCD", "010203A1234", "XX0203-1234", "010203-12æ4"]
)
def test_letters_get_the_ecpr_message(text: str) -> None:
    message = refused(text)
    assert "eCPR" in message
    assert "digits" in message
    assert "letters" in message


@pytest.mark.parametrize(
    "text", ["٠١٠٢٠٣١٢٣٤", "٠١٠٢٠٣-١٢٣٤", "０１０２０３-１２３４", "010203-12³4"]
)
def test_non_ascii_digits_are_refused(text: str) -> None:
    message = refused(text)
    assert "0-9" in message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("310203-1234", "31.02.1903"),
        ("310203-4234", "31.02.2003"),
        ("290200-0123", "29.02.1900"),  # 1900 was not a leap year
        ("290201-4123", "29.02.2001"),
        ("001203-1234", "00.12.1903"),
        ("011303-1234", "01.13.1903"),
        ("320103-1234", "32.01.1903"),
        ("310403-1234", "31.04.1903"),
        ("000000-0000", "00.00.1900"),
        ("999999-9999", "99.99.1999"),
    ],
)
def test_date_that_does_not_exist_is_refused(text: str, shown: str) -> None:
    message = refused(text)
    assert f"{shown} is not a real date" in message
    assert text not in message
    assert text.replace("-", "") not in message


def test_future_birth_date_is_refused() -> None:
    day = datetime.date(2024, 12, 31)
    message = refused("010125-4000", today=day)
    assert "01.01.2025" in message
    assert "future" in message
    assert "0101254000" not in message
    assert "010125-4000" not in message
    assert normalize_cpr("010125-4000", today=day + datetime.timedelta(days=1))
    # the default reference is the real today: 2057 is the latest year a CPR can encode
    refused("311257-5000")


@FAST
@given(st.text())
def test_any_text_gives_a_number_or_invalid_input(text: str) -> None:
    try:
        result = normalize_cpr(text, today=TODAY)
    except InvalidInput as error:
        message = str(error)
        assert "\n" not in message
        assert len(message) < 200
    else:
        assert len(result) == 10
        assert result.isascii()
        assert result.isdigit()


@FAST
@given(st.text(alphabet="0123456789- \t", max_size=14))
def test_digit_soup_gives_a_number_or_invalid_input(text: str) -> None:
    try:
        result = normalize_cpr(text, today=TODAY)
    except InvalidInput as error:
        message = str(error)
        assert "\n" not in message
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) == 10:
            assert digits not in message
    else:
        assert len(result) == 10
        assert birth_date(result) <= TODAY


@pytest.mark.parametrize("bad", ["010203-1234", "010203123", "01020312345", "010203123A", ""])
def test_birth_date_and_format_need_a_normalized_number(bad: str) -> None:
    with pytest.raises(InvalidInput):
        birth_date(bad)
    with pytest.raises(InvalidInput):
        format_cpr(bad)


# -------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("anna@example.com", "anna@example.com"),
        ("  anna@example.com\n", "anna@example.com"),
        ("Anna.Jensen@EXAMPLE.DK", "Anna.Jensen@example.dk"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
        ("søren@æblegård.dk", "søren@æblegård.dk"),
    ],
)
def test_good_email_is_normalized(text: str, expected: str) -> None:
    assert normalize_email(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "anna",
        "anna@",
        "@example.com",
        "anna@@example.com",
        "anna@example",
        "anna jensen@example.com",
        "Anna <anna@example.com>",
        "anna@[127.0.0.1]",
        "anna@localhost",
        "anna\n@example.com",
        "anna\x1b[2J@example.com",
        "anna@example.com\u202e",
        "a" * 300 + "@example.com",
    ],
)
def test_bad_email_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_email(text)
    message = str(info.value)
    assert message.startswith("Invalid e-mail address '")
    assert message.isprintable()
    assert len(message) < 400
    assert info.value.exit_code == EXIT_USAGE


def test_bad_email_message_escapes_and_truncates() -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_email("anna\x1b[2J@example.com")
    assert "anna\\x1b[2J@example.com" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        normalize_email("b" * 500 + "@example.com")
    assert "b" * 60 + "...'" in str(info.value)
    assert "b" * 61 not in str(info.value)


@FAST
@given(st.text())
def test_any_text_gives_an_email_or_invalid_input(text: str) -> None:
    try:
        result = normalize_email(text)
    except InvalidInput as error:
        assert str(error).isprintable()
    else:
        assert "@" in result
        assert normalize_email(result) == result


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Anna Jensen", "Anna Jensen"),
        ("  Anna   Marie\u00a0 Jensen  ", "Anna Marie Jensen"),
        ("Søren Ærø-Østergård", "Søren Ærø-Østergård"),
        ("Zoë O'Brien", "Zoë O'Brien"),
        ("José Mañé", "José Mañé"),
        ("Jose\u0301", "José"),  # NFC: decomposed accent is composed
        ("[bold]x[/]", "[bold]x[/]"),
        (
            "[red]Anna[/red] [link=https://evil]x[/link]",
            "[red]Anna[/red] [link=https://evil]x[/link]",
        ),
        ("Robert'); DROP TABLE portal_user;--", "Robert'); DROP TABLE portal_user;--"),
        ("%s %(name)s {0} ${HOME} `id`", "%s %(name)s {0} ${HOME} `id`"),
        ("李小龍", "李小龍"),
        ("Anna Jensen\n", "Anna Jensen"),  # surrounding whitespace is stripped
        ("x" * 200, "x" * 200),
    ],
)
def test_good_names_are_cleaned(text: str, expected: str) -> None:
    assert clean_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Anna\x1b[2JJensen",
        "\x1b[31mAnna",
        "Anna\nJensen",
        "Anna\rJensen",
        "Anna\tJensen",
        "Anna\x00Jensen",
        "Anna\x7fJensen",
        "Anna\u202eJensen",
        "Anna\u200bJensen",
        "Anna\u2028Jensen",
        "Anna\x85Jensen",
        "Anna\ud800Jensen",
    ],
)
def test_names_with_control_characters_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        clean_name(text)
    message = str(info.value)
    assert "control character" in message
    assert message.isprintable()
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u00a0"])
def test_empty_names_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        clean_name(text)


def test_too_long_names_are_refused() -> None:
    with pytest.raises(InvalidInput, match="201 characters") as info:
        clean_name("x" * 201)
    assert "x" * 61 not in str(info.value)
    with pytest.raises(InvalidInput):
        clean_name("Anna " * 100)
    # length counts after whitespace collapsing
    assert clean_name("x" * 100 + " " * 50 + "y" * 99) == "x" * 100 + " " + "y" * 99


@FAST
@given(st.text())
def test_any_text_gives_a_clean_name_or_invalid_input(text: str) -> None:
    try:
        result = clean_name(text)
    except InvalidInput as error:
        assert str(error).isprintable()
    else:
        assert result
        assert len(result) <= 200
        assert result == result.strip()
        assert "  " not in result
        assert not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in result)
        assert clean_name(result) == result
