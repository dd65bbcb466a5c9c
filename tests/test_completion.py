"""Shell completion: the ready scripts in completions/ match the app, and completion
requests made the way the shells make them (a subprocess with _PATIENTPORTAL_COMPLETE
and the shell's variables) give commands, choices and database values.

Regenerate the scripts with ``python -m patientportal_cli.cli.completion_scripts``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from patientportal_cli.cli import completion_scripts
from tests.helpers.cli import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


# --- the ready scripts ---------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """What the app prints now for --show-completion, per file name."""
    return completion_scripts.render_all()


def test_scripts_in_completions_dir_are_current(rendered):
    stale = completion_scripts.stale(ROOT / "completions", rendered)
    assert not stale, (
        f"completions/ is stale ({', '.join(stale)}): run "
        f"`{completion_scripts.COMMAND}` and commit completions/"
    )


def test_scripts_cover_four_shells_and_call_back_into_the_app(rendered):
    assert sorted(rendered) == [
        "patientportal.bash",
        "patientportal.fish",
        "patientportal.ps1",
        "patientportal.zsh",
    ]
    bash = rendered["patientportal.bash"]
    assert "_PATIENTPORTAL_COMPLETE=complete_bash" in bash
    assert "complete -o default -F _patientportal_completion patientportal" in bash
    assert rendered["patientportal.zsh"].startswith("#compdef patientportal\n")
    assert "_PATIENTPORTAL_COMPLETE=complete_fish" in rendered["patientportal.fish"]
    assert '"complete_powershell"' in rendered["patientportal.ps1"]


def test_check_mode_names_the_stale_file_and_the_command(rendered, tmp_path, capsys):
    assert completion_scripts.write(tmp_path, rendered) == list(rendered)
    assert completion_scripts.stale(tmp_path, rendered) == []
    (tmp_path / "patientportal.zsh").write_text("old\n")
    assert completion_scripts.main(["--dir", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"Stale in {tmp_path}: patientportal.zsh. Run `{completion_scripts.COMMAND}`." in err


# --- completion requests against an initialised SQLite home ----------------------------
def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATIENTPORTAL_", "_"))}
    env.update(PATIENTPORTAL_HOME=str(home), COLUMNS="200", **extra)
    return env


def _run(home: Path, *args: str, input: str | None = None, **extra: str) -> str:  # noqa: A002
    proc = subprocess.run(
        [sys.executable, "-m", "patientportal_cli", *args],
        env=_env(home, **extra),
        input=input,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc
    return proc.stdout


@pytest.fixture(scope="module")
def pp_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clinics NORD and SYD, staff anna (admin) and bo (doctor), on the default SQLite."""
    home = tmp_path_factory.mktemp("completion") / "home"
    _run(
        home,
        *("init", "--clinic", "NORD", "--clinic-name", "Nordklinikken"),
        *("--admin", "anna", "--admin-name", "Anna Admin", "--password-stdin"),
        input=PASSWORD + "\n",
    )
    token = _run(
        home, "login", "anna", "--password-stdin", "--print-token", input=PASSWORD + "\n"
    ).strip()
    _run(
        home,
        *("staff", "add", "bo", "--name", "Bo", "--role", "doctor", "--password-stdin"),
        input=PASSWORD + "\n",
        PATIENTPORTAL_TOKEN=token,
    )
    _run(home, "clinic", "create", "SYD", "--name", "Sydklinikken", PATIENTPORTAL_TOKEN=token)
    return home


def complete_bash(home: Path, words: str, **extra: str) -> list[str]:
    """What bash's completion function receives: COMP_WORDS joined by spaces, the index of
    the word under the cursor in COMP_CWORD (an empty last word: a trailing space)."""
    cword = len(words.split(" ")) - 1
    out = _run(
        home,
        _PATIENTPORTAL_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(cword),
        **extra,
    )
    return [line for line in out.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("patientportal cl", ["clinic"]),
        ("patientportal --clinic N", ["NORD"]),
        ("patientportal --clinic ", ["NORD", "SYD"]),
        ("patientportal clinic show --clinic S", ["SYD"]),
        ("patientportal staff list --clinic X", []),
        ("patientportal clinic set-registration ", ["none", "approval", "open"]),
        ("patientportal clinic set-registration open --pending ", ["keep", "reject", "approve"]),
        (
            "patientportal clinic services --enable ",
            ["e-consultation", "booking", "prescription-renewal"],
        ),
        ("patientportal clinic list -o ", ["table", "json", "csv"]),
        # choices match in any case, as they are accepted in any case
        ("patientportal clinic list -o J", ["json"]),
        ("patientportal clinic set-registration O", ["open"]),
        ("patientportal clinic set-registration open --pending RE", ["reject"]),
        ("patientportal clinic services --enable BO", ["booking"]),
        ("patientportal requests list --status PE", ["pending"]),
        ("patientportal portal login 010203-1234 --method TWO", ["two-factor"]),
        ("patientportal portal register 010203-1234 --login MIT", ["mitid"]),
        ("patientportal staff set-role ", ["anna", "bo"]),
        ("patientportal staff set-role b", ["bo"]),
        ("patientportal staff set-role bo ", ["admin", "doctor", "secretary"]),
        ("patientportal staff unlock b", ["bo"]),
        ("patientportal staff account ", ["anna", "bo"]),
        ("patientportal staff account bo --n", ["--no-may-create-clinics", "--new-password"]),
        ("patientportal staff pa", ["password"]),
        ("patientportal staff add carl --role ", ["admin", "doctor", "secretary"]),
        ("patientportal login ", ["anna", "bo"]),
        ("patientportal patient u", ["unlink", "unlock", "update"]),
        ("patientportal patient res", ["reset-password"]),
        ("patientportal patient update 010203-1234 --c", ["--confirm-email-owner", "--clinic"]),
        ("patientportal patient reset-password 010203-1234 --d", ["--dry-run"]),
        ("patientportal patient reset-password 010203-1234 --clinic S", ["SYD"]),
        ("patientportal patient update ", []),  # a CPR number is not completed
    ],
)
def test_bash_completion_request(pp_home, words, expected):
    assert complete_bash(pp_home, words) == expected


def test_completion_reads_the_database_named_by_home_option(pp_home, tmp_path):
    other = tmp_path / "nothing-here"
    # The env points at an empty home; --home on the command line names the real one.
    words = f"patientportal --home {pp_home} --clinic N"
    assert complete_bash(other, words) == ["NORD"]
    # --db works the same way.
    url = f"sqlite:///{pp_home / 'patientportal.db'}"
    assert complete_bash(other, f"patientportal --db {url} staff set-role b") == ["bo"]
    assert complete_bash(other, "patientportal --clinic N", PATIENTPORTAL_DB_URL=url) == ["NORD"]


def test_database_values_on_both_backends(staff, db_url, home):
    """--clinic and usernames from the database named by PATIENTPORTAL_DB_URL; `_` in a
    typed prefix is a literal character, not a LIKE wildcard."""
    staff.add("a_b", "doctor")
    staff.add("axb", "secretary")
    assert complete_bash(home, "patientportal --clinic N", PATIENTPORTAL_DB_URL=db_url) == ["NORD"]
    words = "patientportal staff set-role a"
    assert complete_bash(home, words, PATIENTPORTAL_DB_URL=db_url) == ["a_b", "anna", "axb"]
    assert complete_bash(home, words + "_", PATIENTPORTAL_DB_URL=db_url) == ["a_b"]
    # in any case, and only the staff of the clinic on the line
    assert complete_bash(home, "patientportal --clinic n", PATIENTPORTAL_DB_URL=db_url) == ["nord"]
    words = "patientportal --clinic nord staff set-role A"
    assert complete_bash(home, words, PATIENTPORTAL_DB_URL=db_url) == ["A_B", "ANNA", "AXB"]
    words = "patientportal --clinic SYD staff set-role "
    assert complete_bash(home, words, PATIENTPORTAL_DB_URL=db_url) == []


def test_completion_without_a_database_offers_nothing_and_creates_nothing(tmp_path):
    home = tmp_path / "fresh"
    assert complete_bash(home, "patientportal --clinic ") == []
    assert complete_bash(home, "patientportal staff set-role ") == []
    assert complete_bash(home, "patientportal clinic set-registration o") == ["open"]
    assert not home.exists()


def test_zsh_and_fish_requests(pp_home):
    zsh = _run(
        pp_home,
        _PATIENTPORTAL_COMPLETE="complete_zsh",
        _TYPER_COMPLETE_ARGS="patientportal --clinic N",
    )
    assert "NORD" in zsh and "SYD" not in zsh
    fish = _run(
        pp_home,
        _PATIENTPORTAL_COMPLETE="complete_fish",
        _TYPER_COMPLETE_FISH_ACTION="get-args",
        _TYPER_COMPLETE_ARGS="patientportal staff set-role ",
    )
    assert [line.split("\t")[0] for line in fish.splitlines()] == ["anna", "bo"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_shipped_bash_script_completes_in_bash(pp_home, tmp_path):
    """Source completions/patientportal.bash in a real bash and press TAB (call the
    completion function the way bash does) with `patientportal` on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "patientportal"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m patientportal_cli "$@"\n')
    wrapper.chmod(0o755)
    script = ROOT / "completions" / "patientportal.bash"
    program = f"""
source "{script}"
COMP_WORDS=(patientportal clinic set-registration "")
COMP_CWORD=3
_patientportal_completion patientportal
printf '%s\\n' "${{COMPREPLY[@]}}"
COMP_WORDS=(patientportal --clinic S)
COMP_CWORD=2
_patientportal_completion patientportal
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = _env(pp_home, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc
    assert proc.stdout.splitlines() == ["none", "approval", "open", "SYD"]


# --- every value from a known set, in any case, at the clinic on the line (issue 12.6) ---
KEYRING = "tests.helpers.file_keyring.FileKeyring"


@pytest.fixture(scope="module")
def two_clinics(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """NORD (anna admin, bo doctor; approval mode, one pending request) and OEST (anna
    admin, olga doctor); anna logged in at NORD with the session in a keyring (a file
    backend, as a desktop keyring), no PATIENTPORTAL_TOKEN. Returns the home and the
    environment that selects that keyring."""
    base = tmp_path_factory.mktemp("clinics")
    home = base / "home"
    keyring_env = {"PYTHON_KEYRING_BACKEND": KEYRING, "TEST_KEYRING_FILE": str(base / "kr.json")}
    _run(
        home,
        *("init", "--clinic", "NORD", "--clinic-name", "Nordklinikken"),
        *("--admin", "anna", "--admin-name", "Anna Admin", "--password-stdin"),
        input=PASSWORD + "\n",
    )
    _run(home, "login", "anna", "--password-stdin", input=PASSWORD + "\n", **keyring_env)
    assert not (home / "session-token").exists()  # the session is in the keyring
    for clinic, user in [("NORD", "bo"), ("OEST", "olga")]:
        if clinic == "OEST":
            _run(home, "clinic", "create", "OEST", "--name", "Østklinikken", **keyring_env)
        _run(
            home,
            *("--clinic", clinic, "staff", "add", user, "--name", user.title()),
            *("--role", "doctor", "--password-stdin"),
            input=PASSWORD + "\n",
            **keyring_env,
        )
    _run(home, "--clinic", "NORD", "clinic", "set-registration", "approval", **keyring_env)
    # the session kept in the keyring acts on NORD
    login = ("--clinic", "NORD", "login", "anna", "--password-stdin")
    _run(home, *login, input=PASSWORD + "\n", **keyring_env)
    _run(
        home,
        *("portal", "register", "050607-1234", "--clinic", "NORD", "--name", "Eva"),
        *("--email", "eva@example.dk", "--password-stdin"),
        input=PASSWORD + "\n",
    )
    return home, keyring_env


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        # --services where a command takes services
        ("patientportal patient create 010203-1234 --services b", ["booking"]),
        (
            "patientportal portal register 010203-1234 --services ",
            ["e-consultation", "booking", "prescription-renewal"],
        ),
        (
            "patientportal requests approve 1 --services booking,",
            ["booking,e-consultation", "booking,prescription-renewal"],
        ),
        ("patientportal patient link 010203-1234 --services P", ["PRESCRIPTION-RENEWAL"]),
        # import and reconcile files
        ("patientportal patient import f.csv --format ", ["csv", "jsonl"]),
        ("patientportal patient import f.csv --format J", ["JSONL"]),
        ("patientportal patient import f.csv --delimiter ", ["semicolon", "comma", "tab"]),
        ("patientportal patient import f.csv --encoding cp", ["cp1252"]),
        ("patientportal patient reconcile f.csv --delimiter t", ["tab"]),
        # roles, in the case typed
        ("patientportal staff add carl --role D", ["DOCTOR"]),
        ("patientportal staff set-role bo admin,S", ["admin,SECRETARY"]),
        # clinic codes in the case typed (lower case is accepted as input)
        ("patientportal --clinic o", ["oest"]),
        ("patientportal --clinic ", ["NORD", "OEST"]),
        ("patientportal staff list --clinic n", ["nord"]),
        # staff of the clinic given earlier on the line, before or after the command
        ("patientportal --clinic OEST staff set-role ", ["anna", "olga"]),
        ("patientportal --clinic oest staff disable ", ["anna", "olga"]),
        ("patientportal staff unlock --clinic NORD ", ["anna", "bo"]),
        ("patientportal --clinic OEST login ", ["anna", "olga"]),
        ("patientportal --clinic OEST audit list --staff ", ["anna", "olga"]),
        ("patientportal --clinic OEST staff set-role O", ["OLGA"]),
        # a staff account as a whole: every account
        ("patientportal staff account ", ["anna", "bo", "olga"]),
    ],
)
def test_values_complete_in_any_case_at_the_clinic_on_the_line(two_clinics, words, expected):
    home, keyring_env = two_clinics
    assert complete_bash(home, words, **keyring_env) == expected


def test_keyring_session_completes_request_ids_and_its_clinic_staff(two_clinics):
    """A login kept in the keyring (no PATIENTPORTAL_TOKEN) is the session completion
    uses: request ids of its clinic, staff of its clinic; nothing is written."""
    home, keyring_env = two_clinics
    db = home / "patientportal.db"
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    assert complete_bash(home, "patientportal requests approve ", **keyring_env) == ["1"]
    assert complete_bash(home, "patientportal requests show ", **keyring_env) == ["1"]
    assert complete_bash(home, "patientportal requests reject 2", **keyring_env) == []
    words = "patientportal --clinic OEST requests approve "
    assert complete_bash(home, words, **keyring_env) == []  # none pending at OEST
    assert complete_bash(home, "patientportal staff set-role ", **keyring_env) == ["anna", "bo"]
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    # without the keyring there is no session: no request ids, every account
    assert complete_bash(home, "patientportal requests approve ") == []
    assert complete_bash(home, "patientportal staff set-role ") == ["anna", "bo", "olga"]


def test_completion_in_a_fresh_home_creates_nothing(tmp_path):
    home = tmp_path / "fresh"
    for words, expected in [
        ("patientportal --clinic o", []),
        ("patientportal requests approve ", []),
        ("patientportal --clinic OEST staff set-role ", []),
        ("patientportal patient import f.csv --format ", ["csv", "jsonl"]),
        ("patientportal portal register 010203-1234 --services b", ["booking"]),
    ]:
        assert complete_bash(home, words) == expected, words
    assert not home.exists()
