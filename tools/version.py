"""The one version of every spoc-workers distribution: read it, compute the next one, write it.

The version lives in the repository's ``VERSION`` file; each package's ``pyproject.toml``
reads it from there (``[tool.hatch.version]``). This module is the only code that
changes it: ``tools/release.py`` imports it, and it is a command of its own::

    python tools/version.py            # print the version
    python tools/version.py minor      # 0.1.0 -> 0.2.0 (also: major, patch)
    python tools/version.py 0.3.0rc1   # an explicit version, which must be higher

A version is ``X.Y.Z``, or a pre-release of it (``X.Y.ZaN``, ``X.Y.ZbN``, ``X.Y.ZrcN``):
canonical PEP 440, so that the ``VERSION`` file, the file names, the git tag and the PyPI
release all read the same. It needs only the standard library (the release workflow runs
it on a bare Python).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION_FILE = ROOT / "VERSION"
PARTS = ("major", "minor", "patch")
"""The parts ``next_version`` can bump; anything else must be an explicit version."""
PATTERN = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:(a|b|rc)(0|[1-9]\d*))?")
PRE_RANK = {"a": 0, "b": 1, "rc": 2, None: 3}
"""How pre-releases sort: 1.0.0a1 < 1.0.0b1 < 1.0.0rc1 < 1.0.0."""


class VersionError(ValueError):
    """A version that cannot be used; the message says why."""


def parse(text: str) -> tuple[int, int, int, int, int]:
    """``text`` as a key that sorts versions; :class:`VersionError` unless it is a valid version.

    ``1.2.0`` and ``1.2.0rc1`` are accepted; ``v1.2.0``, ``1.2``, ``01.2.0``, ``1.2.0-rc1``
    or ``1.2.0.dev1`` are not.
    """
    match = PATTERN.fullmatch(text)
    if match is None:
        raise VersionError(
            f"{text!r} is not a version of the form X.Y.Z or X.Y.Z(a|b|rc)N, e.g. 1.2.0 or 1.2.0rc1"
        )
    major, minor, patch, pre, number = match.groups()
    return (int(major), int(minor), int(patch), PRE_RANK[pre], int(number or 0))


def read_version(root: Path = ROOT) -> str:
    """The version in ``root``'s ``VERSION`` file (checked to be a canonical version)."""
    text = (root / "VERSION").read_text(encoding="utf-8").strip()
    parse(text)
    return text


def next_version(current: str, spec: str) -> str:
    """The version after ``current``: ``spec`` is ``major``, ``minor``, ``patch`` or a version.

    Bumping a part sets the parts after it to zero and drops any pre-release suffix
    (``1.2.0rc1`` + ``patch`` -> ``1.2.1``; for ``1.2.0`` itself, give it explicitly).
    The result is always higher than ``current``, or :class:`VersionError` says it is not.
    """
    old = parse(current)
    if spec in PARTS:
        major, minor, patch = old[:3]
        bumped = {
            "major": (major + 1, 0, 0),
            "minor": (major, minor + 1, 0),
            "patch": (major, minor, patch + 1),
        }[spec]
        new_text = ".".join(str(part) for part in bumped)
    else:
        new_text = spec
    new = parse(new_text)
    if new <= old:
        raise VersionError(f"{new_text} is not higher than the current version {current}")
    return new_text


def write_version(version: str, root: Path = ROOT) -> None:
    """Write ``version`` (checked to be canonical) into ``root``'s ``VERSION`` file."""
    parse(version)
    (root / "VERSION").write_text(version + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Print the version, or bump it and print the change."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("spec", nargs="?", help="major, minor, patch, or an explicit higher version")
    args = parser.parse_args(argv)
    try:
        current = read_version()
        if args.spec is None:
            print(current)
            return 0
        new = next_version(current, args.spec)
    except VersionError as exc:
        print(f"version: {exc}", file=sys.stderr)
        return 1
    write_version(new)
    print(f"{current} -> {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
