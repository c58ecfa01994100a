"""Release the four spoc-workers distributions in lockstep: ``nox -s release -- X.Y.Z``.

Run it from a clean checkout of the branch to release (main). Steps, each printed; the
first failure stops it and leaves the checkout as it was:

1. Refuse to go on when ``X.Y.Z`` is not a version (``tools/version.py``), not higher than
   ``VERSION``, not written in its normal form (``1.2.0rc1``, not ``v1.2.0-rc.1``) or a
   local version (``+...``, which PyPI refuses); when the tag ``vX.Y.Z`` exists; when the
   git tree has any change or untracked file, or ``HEAD`` is not on a branch; or when
   ``docs/changelog.md`` has no ``## Unreleased`` section as its first ``##`` heading, or
   an empty one.
2. Write ``X.Y.Z`` into ``VERSION`` and turn ``## Unreleased`` into ``## X.Y.Z (YYYY-MM-DD)``
   (today, UTC).
3. ``tests/packaging/check_build.py --dist-dir dist``, as ``nox -s build`` runs it: sdists
   and wheels of all four, the exact sibling pins, the metadata users see, every install
   subset in a fresh venv from the built files only, ``twine check --strict``. The eight
   checked files land in ``dist/``. If anything fails, ``VERSION`` and the changelog are
   restored.
4. Commit those two files as ``Release X.Y.Z`` and tag it ``vX.Y.Z`` (annotated).
5. Print the one step that publishes: pushing the branch and the tag, atomically. The
   release workflow (``.github/workflows/release.yml``) then builds, checks and publishes
   the four distributions, in dependency order, and deploys the docs of the version.

It never uploads anything, and pushes nothing.

``--check-tag vX.Y.Z`` (the release workflow's first step) only checks that the tag is
``v`` + ``VERSION`` and that the changelog has the heading of that version.

It needs git, ``packaging`` (``tools/version.py``) and, for step 3, ``build``, ``twine``
and ``trove-classifiers`` in the running Python (``nox -s release`` installs them).
"""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from version import VersionError, bumped, parse, read

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "docs" / "changelog.md"
CHECK_BUILD = ROOT / "tests" / "packaging" / "check_build.py"
DIST = ROOT / "dist"
REMOTE = "origin"
UNRELEASED = "## Unreleased"
RELEASED_FILES = ("VERSION", "docs/changelog.md")
"""What a release changes: the one commit it makes holds exactly these."""


class ReleaseError(Exception):
    """The release cannot go on; the message says why and what to do."""


def git(*args: str) -> str:
    """Run git in the repository; return its stdout, or raise :class:`ReleaseError` with its stderr."""
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ReleaseError(f"git {shlex.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def tag_of(version: str) -> str:
    """The git tag of ``version``; the release workflow runs on tags ``v*``."""
    return f"v{version}"


def release_heading(version: str, date: datetime.date) -> str:
    """The changelog heading of a release."""
    return f"## {version} ({date.isoformat()})"


def unreleased_section(text: str) -> tuple[int, int]:
    """The line range [start, end) of the ``## Unreleased`` section of the changelog ``text``.

    Raises :class:`ReleaseError` unless ``## Unreleased`` is the first ``##`` heading and
    has some text under it besides subheadings.
    """
    lines = text.splitlines()
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")]
    if not headings or lines[headings[0]].rstrip() != UNRELEASED:
        first = repr(lines[headings[0]]) if headings else "none"
        raise ReleaseError(
            f"docs/changelog.md has no {UNRELEASED!r} section as its first '## ' heading (first: {first}):"
            " add one saying what this release changes"
        )
    start = headings[0]
    end = headings[1] if len(headings) > 1 else len(lines)
    entries = [line for line in lines[start + 1 : end] if line.strip() and not line.startswith("#")]
    if not entries:
        raise ReleaseError(
            f"the {UNRELEASED!r} section of docs/changelog.md is empty: say what this release changes"
        )
    return start, end


def check_can_release(version: str) -> tuple[str, str]:
    """Every refusal of step 1; return (the current version, the branch)."""
    current = read(ROOT / "VERSION")
    normal = bumped(current, version)  # VersionError: not a version, or not higher
    if normal != version:
        raise ReleaseError(f"{version!r} is not the normal form of that version: give {normal!r}")
    if parse(version).local is not None:
        raise ReleaseError(f"{version!r} is a local version, which PyPI refuses")
    if git("tag", "--list", tag_of(version)).strip():
        raise ReleaseError(f"the tag {tag_of(version)} exists already")
    dirty = git("status", "--porcelain", "--untracked-files=all").rstrip()
    if dirty:
        raise ReleaseError(f"the git tree is not clean; commit or remove these first:\n{dirty}")
    branch = git("branch", "--show-current").strip()
    if not branch:
        raise ReleaseError("HEAD is not on a branch: check out the branch to release (main)")
    unreleased_section(CHANGELOG.read_text(encoding="utf-8"))
    return current, branch


def bump(version: str, date: datetime.date) -> None:
    """Step 2: write ``version`` into VERSION and name the Unreleased section after it."""
    text = CHANGELOG.read_text(encoding="utf-8")
    start, _ = unreleased_section(text)
    lines = text.splitlines(keepends=True)
    lines[start] = release_heading(version, date) + "\n"
    CHANGELOG.write_text("".join(lines), encoding="utf-8")
    (ROOT / "VERSION").write_text(version + "\n", encoding="utf-8")


def restore() -> None:
    """Undo step 2 (the tree was clean before it)."""
    git("checkout", "--", *RELEASED_FILES)


def build_and_check() -> None:
    """Step 3: check_build.py, keeping the checked files in dist/."""
    command = [sys.executable, str(CHECK_BUILD), "--dist-dir", str(DIST)]
    print(f"$ {shlex.join(command)}", flush=True)
    if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
        raise ReleaseError("the build or a check of the distributions failed (see above)")


def release(version: str) -> int:
    """Steps 1 to 5; return the exit status."""
    current, branch = check_can_release(version)
    date = datetime.datetime.now(datetime.timezone.utc).date()
    print(f"release: {current} -> {version} on branch {branch}", flush=True)
    bump(version, date)
    print(f"release: VERSION is {version}; docs/changelog.md: {release_heading(version, date)!r}", flush=True)
    try:
        build_and_check()
    except BaseException:
        restore()
        print("release: VERSION and docs/changelog.md restored", file=sys.stderr)
        raise
    git("commit", "--quiet", "-m", f"Release {version}", "--", *RELEASED_FILES)
    git("tag", "--annotate", tag_of(version), "-m", f"spoc-workers {version}")
    commit = git("rev-parse", "--short", "HEAD").strip()
    built = sorted(path.name for path in DIST.iterdir() if path.name.startswith("spoc_workers_"))
    print(f"\nrelease: committed {commit} 'Release {version}' and tagged it {tag_of(version)}")
    print(f"release: {len(built)} checked files in dist/: {', '.join(built)}")
    print(
        "release: nothing was uploaded. The one step that publishes (the release workflow does the rest):\n"
    )
    print(f"git push --atomic {REMOTE} {branch} {tag_of(version)}")
    return 0


def check_tag(tag: str) -> int:
    """``--check-tag``: the tag is ``v`` + VERSION, and the changelog has that version's heading."""
    version = read(ROOT / "VERSION")
    if tag != tag_of(version):
        raise ReleaseError(f"the tag {tag!r} is not {tag_of(version)!r} (VERSION is {version})")
    pattern = rf"^## {re.escape(version)} \(\d{{4}}-\d{{2}}-\d{{2}}\)$"
    if not re.search(pattern, CHANGELOG.read_text(encoding="utf-8"), re.MULTILINE):
        raise ReleaseError(f"docs/changelog.md has no heading '## {version} (YYYY-MM-DD)'")
    print(f"release: the tag {tag} is the version in VERSION, and docs/changelog.md has its entry")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Release the version given, or check a tag; print why not and return 1 if it cannot."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("version", nargs="?", help="the version to release, X.Y.Z (or X.Y.ZrcN)")
    group.add_argument("--check-tag", metavar="TAG", help="only check that TAG is v + VERSION")
    args = parser.parse_args(argv)
    try:
        return check_tag(args.check_tag) if args.check_tag else release(args.version)
    except (ReleaseError, VersionError) as exc:
        print(f"release: stopped: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
