"""Files only their owner can read: the home directory, the database, config, mail,
reports, exports and spools.

Every file this program creates is 0600 and every directory 0700, whatever the umask:
``private_dir`` and ``open_private`` set the mode themselves. (The CLI also runs each
command under umask 077, so that files made by libraries, such as SQLite's -wal/-shm or
a Maildir's temporary files, are private from the first byte.)

Spools (phase one of a bulk import, standard input copied to a file) live in
``HOME/spool/``, never in the system's temporary directory. Each run gets its own
``HOME/spool/PID-RANDOM/`` directory and holds an exclusive ``flock`` on
``PID-RANDOM.lock`` beside it while it runs; the kernel drops the lock when the process
ends, however it ends. ``sweep_spools`` (run at the start of every command) removes each
run directory whose lock nobody holds: what a killed run left behind. On a platform
without ``flock`` a run directory older than a day counts as left behind.

Standard library only: the services use this module too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
UMASK = 0o077
SPOOL = "spool"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_STALE_WITHOUT_FLOCK = 24 * 3600


def named(exc: OSError, path: Path | str) -> OSError:
    """The same error, naming ``path`` (a failed write() does not name its file)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def private_dir(path: Path) -> Path:
    """``path`` as a directory; the levels this creates are 0700. An existing directory
    keeps its mode (see ``loose_mode``)."""
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if not level.is_dir():
                raise
            continue
        os.chmod(level, PRIVATE_DIR)
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))
    return path


def open_private(
    path: Path,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    follow: bool = True,
    exclusive: bool = False,
) -> IO[Any]:
    """``open(path, mode)`` for writing, the file 0600 (an existing regular file is made
    0600 too). ``follow=False`` refuses a symbolic link; ``exclusive`` a file that exists.
    ``mode`` is "w", "wb", "a" or "ab"."""
    flags = os.O_WRONLY | os.O_CREAT | _CLOEXEC
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    if exclusive:
        flags |= os.O_EXCL
    if not follow:
        flags |= _NOFOLLOW
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # never chmod /dev/stdout, a pipe ...
            os.fchmod(fd, PRIVATE_FILE)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, text: str, *, encoding: str = "utf-8", atomic: bool = False) -> None:
    """Write ``text`` to ``path`` (0600). ``atomic``: via PATH.tmp and a rename, so a
    reader never sees half a file. An OSError names the path."""
    target = path.with_name(path.name + ".tmp") if atomic else path
    try:
        with open_private(target, encoding=encoding, follow=not atomic) as handle:
            handle.write(text)
        if atomic:
            os.replace(target, path)
    except OSError as exc:
        if atomic:
            with contextlib.suppress(OSError):
                target.unlink()
        raise named(exc, path) from None


def make_private(path: Path) -> None:
    """Take group and other permissions off an existing regular file we own."""
    with contextlib.suppress(OSError):
        info = os.stat(path, follow_symlinks=False)
        if (
            stat.S_ISREG(info.st_mode)
            and info.st_mode & 0o077
            and info.st_uid == getattr(os, "getuid", lambda: info.st_uid)()
        ):
            os.chmod(path, PRIVATE_FILE)


def loose_mode(path: Path) -> int | None:
    """The mode of an existing directory that group or others may use, else None."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o077:
        return stat.S_IMODE(info.st_mode)
    return None


def home_warning(home: Path) -> str | None:
    """The one-line warning for a home directory that other users can read."""
    mode = loose_mode(home)
    if mode is None or os.name != "posix":
        return None
    return f"Warning: {home} is readable by other users (mode {mode:04o}): run chmod 700 {home}"


# --- spools ----------------------------------------------------------------------------
def _try_lock(fd: int) -> bool:
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _sweep_lock(root: Path) -> Iterator[None]:
    """Creating a run directory and sweeping never overlap (blocking flock on .lock)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _left_behind(run: Path) -> bool:
    lock = run.with_name(run.name + ".lock")
    if fcntl is None:  # pragma: no cover - Windows
        try:
            return time.time() - run.stat().st_mtime > _STALE_WITHOUT_FLOCK
        except OSError:
            return False
    try:
        fd = os.open(lock, os.O_RDWR | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)


def _sweep(root: Path) -> int:
    removed = 0
    for entry in root.iterdir():
        if entry.name.startswith(".") or entry.suffix == ".lock":
            continue
        if _left_behind(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            entry.with_name(entry.name + ".lock").unlink(missing_ok=True)
            removed += 1
    for lock in root.glob("*.lock"):  # a lock whose run directory is gone
        if not lock.with_suffix("").exists() and _left_behind(lock.with_suffix("")):
            lock.unlink(missing_ok=True)
    return removed


def sweep_spools(home: Path) -> int:
    """Remove what killed runs left in HOME/spool; how many run directories went.
    Quiet and cheap when there is no spool directory; never raises OSError."""
    root = home / SPOOL
    if not root.is_dir():
        return 0
    try:
        with _sweep_lock(root):
            return _sweep(root)
    except OSError:
        return 0


@contextlib.contextmanager
def spool(home: Path) -> Iterator[Path]:
    """A fresh private directory HOME/spool/PID-RANDOM for one run, removed at the end
    (and, after a kill, by the next command's ``sweep_spools``)."""
    root = private_dir(home / SPOOL)
    run = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    lock_fd: int | None = None
    with _sweep_lock(root):
        _sweep(root)
        if fcntl is not None:
            lock_fd = os.open(
                run.with_name(run.name + ".lock"),
                os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                PRIVATE_FILE,
            )
            _try_lock(lock_fd)
        run.mkdir(mode=PRIVATE_DIR)
        os.chmod(run, PRIVATE_DIR)
    try:
        yield run
    finally:
        shutil.rmtree(run, ignore_errors=True)
        if lock_fd is not None:
            run.with_name(run.name + ".lock").unlink(missing_ok=True)
            os.close(lock_fd)
