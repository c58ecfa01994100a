"""Show or bump the one version of every spoc-workers distribution, kept in ``VERSION``.

Usage::

    python tools/version.py                  # print the version
    python tools/version.py minor            # 0.1.0 -> 0.2.0 (also: major, patch)
    python tools/version.py 1.0.0rc1         # set it: a PEP 440 version higher than now

``nox -s version -- ...`` runs this with nox's own interpreter: it needs only
``packaging``, which nox itself depends on (no hatch). As with
``hatch version``, a bump keeps three release numbers and drops any pre-,
post- or dev-release part, and a version that is not higher is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

VERSION_FILE = Path(__file__).resolve().parents[1] / "VERSION"
BUMPS = ("major", "minor", "patch")


class VersionError(ValueError):
    """A version or a bump that cannot be used; the message says why."""


def parse(text: str) -> Version:
    """``text`` as a PEP 440 version.

    Raises:
        VersionError: it is not one.
    """
    try:
        return Version(text)
    except InvalidVersion:
        raise VersionError(
            f"{text!r} is not a version: expected major, minor, patch or a PEP 440 version "
            "such as 1.2.3 or 1.2.3rc1"
        ) from None


def bumped(current: str, how: str) -> str:
    """The version after ``how``: ``major``, ``minor``, ``patch`` or an explicit version.

    Raises:
        VersionError: ``current`` or ``how`` is not valid, or the new version
            is not higher than ``current``.
    """
    old = parse(current)
    if how in BUMPS:
        release = [*old.release, 0, 0][:3]
        index = BUMPS.index(how)
        release = [*release[:index], release[index] + 1] + [0] * (2 - index)
        new = Version(".".join(map(str, release)))
    else:
        new = parse(how)
    if new <= old:
        raise VersionError(f"version {new} is not higher than the current version {old}")
    return str(new)


def read(path: Path) -> str:
    """The version in ``path``.

    Raises:
        VersionError: the file does not hold exactly one valid version.
    """
    text = path.read_text().strip()
    if len(text.split()) != 1:
        raise VersionError(f"{path}: expected one version on one line, found {text!r}")
    parse(text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Print the version, or bump it and print the old and the new one; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="nox -s version --", description="Show or bump VERSION.")
    parser.add_argument("bump", nargs="?", help="major, minor, patch, or an explicit version")
    parser.add_argument("--file", type=Path, default=VERSION_FILE, help="the VERSION file (for tests)")
    args = parser.parse_args(argv)
    try:
        current = read(args.file)
        if args.bump is None:
            print(current)
            return 0
        new = bumped(current, args.bump)
    except VersionError as exc:
        print(f"version: error: {exc}", file=sys.stderr)
        return 2
    args.file.write_text(new + "\n")
    print(f"Old: {current}\nNew: {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
