"""What a copy of the database is worth to someone guessing codes offline.

    python benchmarks/code_guessing.py            # 20 argon2 checks, 1 s of SHA-256
    python benchmarks/code_guessing.py --argon2 50

The database stores only hashes of one-time codes (``services/codes.py``):

- a 6-digit security code (10^6 values, valid 10 minutes) is hashed with argon2id with
  the production parameters (argon2-cffi's defaults) and its own salt: this script
  times one check, as an attacker's candidate costs, and multiplies by 10^6;
- an activation code (16 letters of 5 bits = 80 bits, valid 7 days) is hashed with
  SHA-256: this script counts SHA-256 hashes per second and divides 2^80 by it.

It prints per-core figures and the number of cores an attacker would need to try every
security code within the code's lifetime. Not a timed test: run it by hand on the
machine you care about.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from patientportal_cli.services import codes, passwords  # noqa: E402

YEAR = 365.25 * 24 * 3600


def argon2_check_seconds(runs: int) -> float:
    """Median seconds to check one candidate against a stored security-code hash."""
    stored = codes._hash(codes.LOGIN, "123456")
    times = []
    for i in range(runs):
        start = time.perf_counter()
        passwords.verify_password(stored, f"{i:06d}")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sha256_per_second(seconds: float) -> float:
    count = 0
    data = b"ABCDEFGHJKLMNPQR"
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10_000):
            hashlib.sha256(data).digest()
        count += 10_000
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--argon2", type=int, default=20, help="argon2 checks to time")
    args = parser.parse_args()

    lifetime = codes.LIFETIME[codes.LOGIN].total_seconds()
    check = argon2_check_seconds(args.argon2)
    all_codes = check * 1_000_000
    print(f"security code: one argon2id check {check * 1000:.0f} ms (median of {args.argon2})")
    print(
        f"  all 10^6 codes: {all_codes / 3600:.1f} core-hours; the code lives "
        f"{lifetime / 60:.0f} minutes, so finishing in time takes "
        f"{all_codes / lifetime:,.0f} cores (half of that for an even chance)"
    )
    rate = sha256_per_second(1.0)
    years = 2**80 / rate / YEAR
    print(f"activation code: {rate:,.0f} SHA-256/s per core; 2^80 codes: {years:.1e} core-years")


if __name__ == "__main__":
    main()
