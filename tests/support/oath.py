"""Codes: right ones from pyotp or Debian's oathtool, wrong ones that match no step,
and their other spellings."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time

import pyotp
import pytest

from standalone_mfa.factors import totp


def wrong_code(secret, clock=None) -> str:
    """A well-formed code that matches no step anywhere near now (not even the ±10
    steps the clock-drift hint looks at); now is the clock's, or the real time."""
    now = clock.timestamp() if clock is not None else time.time()
    totp = pyotp.TOTP(secret)
    near = {totp.at(now + 30 * s) for s in range(-25, 26)}
    number = 123456
    while f"{number:06d}" in near:
        number += 1
    return f"{number:06d}"


def tool(name: str) -> str:
    """The path of a command the tests need; fails the test when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it with apt")
    return path


def oathtool_codes(secret: str, first_step: int, count: int = 1) -> list[str]:
    """Codes for `count` time steps from `first_step`, by oathtool (not our code)."""
    when = dt.datetime.fromtimestamp(first_step * totp.PERIOD, dt.UTC)
    result = subprocess.run(
        [
            tool("oathtool"),
            "--totp",
            "--base32",
            f"--window={count - 1}",
            "--now",
            when.strftime("%Y-%m-%d %H:%M:%S UTC"),
            secret,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, f"oathtool failed: {result.stderr}"
    codes = result.stdout.split()
    assert len(codes) == count and all(re.fullmatch(r"\d{6}", c) for c in codes), codes
    return codes


def valid_codes(secret, clock, spread=3):
    totp = pyotp.TOTP(secret)
    return {totp.at(clock.timestamp() + 30 * s) for s in range(-spread, spread + 1)}


# Well-formed (base32, 16 characters) but nobody's code.
UNKNOWN_RECOVERY_CODE = "abcd-efgh-ijkl-mnop"


def fresh_code(browser, secret, steps=0) -> str:
    """Move to the next time step, then read the code `steps` steps from now."""
    browser.clock.advance(30)
    return browser.code(secret, steps)


def spellings(code: str) -> set[str]:
    """Every way a recovery code could be written down or stored in plain."""
    plain = code.replace("-", "")
    return {code, code.upper(), plain, plain.upper()}
