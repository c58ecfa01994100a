"""A dry-run release and docs deploy, in a temporary copy of the repository.

Run by ``nox -s release_check`` (one of the default sessions, so ``.ci/run`` runs it), or
from a Python with ``build``, ``twine``, ``trove-classifiers``, MkDocs (and the docs'
plugins) and ``mike``::

    python tests/packaging/check_release.py

The checkout itself is never changed (checked at the end). Steps, each printed; the first
failure stops the script with exit status 1:

1. Copy the checkout's files (tracked, and untracked but not ignored: what a commit of the
   work tree would hold) into a new git repository, on ``main``, with one commit. If its
   changelog lacks a ``## Unreleased`` entry (right after a release), one is added.
2. ``tools/release.py`` refuses, changing nothing: a version that is not one, a tag name,
   a local version, one that is not higher, an untracked and a modified file, an existing
   tag, a changelog without an ``## Unreleased`` section and one with an empty section.
3. The dry run: ``tools/release.py X.Y.Z`` of a throwaway version (the next patch version):
   ``VERSION``, the changelog heading, the one commit and its tag, the eight files in
   ``dist/`` (names, versions, exact pins, ``twine check``), a clean tree, and the one
   upload step printed last. Then another release is refused (no Unreleased section left),
   and ``--check-tag`` accepts the tag and refuses another.
4. The printed upload step, run as printed, against a local bare repository as ``origin``.
5. The docs workflows, each from a fresh clone of that bare repository: ``deploy_docs.py dev
   --push`` (main) then ``deploy_docs.py release --push`` (the tag). Its ``gh-pages`` branch
   must hold ``versions.json`` with both, the version directories, the ``latest`` alias
   (redirects), the root redirecting to ``latest/``, and pages with mike's version selector.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_build import PACKAGES, ROOT, CheckError, expect, ok, parse_metadata, step
from release import ReleaseError, unreleased_section
from version import bumped, read

OUTPUT_TAIL = 40
"""How many lines of a failed command's output to show."""


def git_env() -> dict[str, str]:
    """An environment in which git reads no configuration of this machine and has an identity."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Release Check",
        GIT_AUTHOR_EMAIL="release-check@localhost",
        GIT_COMMITTER_NAME="Release Check",
        GIT_COMMITTER_EMAIL="release-check@localhost",
    )
    env.setdefault("NO_MKDOCS_2_WARNING", "1")
    return env


ENV = git_env()


def run(cmd: Sequence[str | Path], cwd: Path, *, expect_status: int = 0) -> str:
    """Run ``cmd`` in ``cwd``; return its output, or raise :class:`CheckError` if its status differs."""
    args = [str(arg) for arg in cmd]
    proc = subprocess.run(
        args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    if (proc.returncode == 0) != (expect_status == 0):
        tail = "\n".join(proc.stdout.rstrip().splitlines()[-OUTPUT_TAIL:])
        raise CheckError(
            f"exit status {proc.returncode} (expected {'0' if expect_status == 0 else 'non-zero'}):"
            f" {shlex.join(args)} in {cwd}\n{tail}"
        )
    return proc.stdout


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo``; return its output."""
    return run(["git", *args], repo)


def release(repo: Path, *args: str, refused: bool = False) -> str:
    """Run the copy's ``tools/release.py`` with this Python."""
    return run(
        [sys.executable, repo / "tools" / "release.py", *args], repo, expect_status=1 if refused else 0
    )


def snapshot(root: Path) -> tuple[str, str, str]:
    """What must not change in the real checkout: its git status, HEAD and VERSION."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    return status, head.stdout, (root / "VERSION").read_text(encoding="utf-8")


def copy_checkout(repo: Path) -> None:
    """Step 1: the checkout's non-ignored files, committed on ``main`` in a new repository ``repo``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    count = 0
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():  # deleted in the work tree
            continue
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        count += 1
    git(repo, "init", "--quiet", "--initial-branch=main")
    changelog = repo / "docs" / "changelog.md"
    text = changelog.read_text(encoding="utf-8")
    try:
        unreleased_section(text)
    except ReleaseError:
        text = text.replace("## Unreleased\n", "", 1)  # an empty one
        first = re.search(r"^## ", text, re.MULTILINE)
        at = first.start() if first else len(text)
        entry = "## Unreleased\n\n- A throwaway entry of the dry-run release.\n\n"
        changelog.write_text(text[:at] + entry + text[at:], encoding="utf-8")
        ok("docs/changelog.md had no Unreleased entry (just after a release): one was added in the copy")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "The checkout, copied for a dry-run release")
    ok(f"{count} files copied from {ROOT} into {repo}, committed on main")


def built_files(repo: Path) -> dict[str, float]:
    """The files in the copy's dist/, with their modification times."""
    dist = repo / "dist"
    return {path.name: path.stat().st_mtime for path in dist.iterdir()} if dist.is_dir() else {}


def expect_refusal(repo: Path, args: Sequence[str], reason: str, what: str) -> None:
    """The release refuses with ``reason`` in its message, and the copy is unchanged (no tag, no dist)."""
    before = git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "rev-parse", "HEAD")
    version = (repo / "VERSION").read_text(encoding="utf-8")
    built = built_files(repo)
    output = release(repo, *args, refused=True)
    expect(reason in output, f"{what}: the refusal does not say {reason!r}:\n{output}")
    after = git(repo, "status", "--porcelain", "--untracked-files=all"), git(repo, "rev-parse", "HEAD")
    expect(after == before, f"{what}: the refused release changed the copy: {before} -> {after}")
    expect((repo / "VERSION").read_text(encoding="utf-8") == version, f"{what}: VERSION changed")
    expect(built_files(repo) == built, f"{what}: something was built")
    line = next(line for line in output.splitlines() if "stopped:" in line)
    ok(f"{what}: {line.strip()}")


def with_changelog(repo: Path, text: str, args: Sequence[str], reason: str, what: str) -> None:
    """Commit ``text`` as the changelog, expect the refusal, then drop that commit."""
    (repo / "docs" / "changelog.md").write_text(text, encoding="utf-8")
    git(repo, "commit", "--quiet", "-am", f"Changelog: {what}")
    expect_refusal(repo, args, reason, what)
    git(repo, "reset", "--quiet", "--hard", "HEAD~1")


def check_refusals(repo: Path, current: str, new: str) -> None:
    """Step 2: every refusal, none changing the copy."""
    expect_refusal(repo, ["banana"], "is not a version", "not a version")
    expect_refusal(repo, [f"v{new}"], f"give {new!r}", "a tag, not a version")
    expect_refusal(repo, [f"{new}+local"], "PyPI refuses", "a local version")
    expect_refusal(repo, [current], "is not higher", "the current version")
    if current != "0.0.0":
        expect_refusal(repo, ["0.0.0"], "is not higher", "a lower version")

    (repo / "scratch.txt").write_text("not committed\n", encoding="utf-8")
    expect_refusal(repo, [new], "not clean", "an untracked file")
    (repo / "scratch.txt").unlink()
    readme = repo / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nA change.\n", encoding="utf-8")
    expect_refusal(repo, [new], "not clean", "a modified file")
    git(repo, "checkout", "--", "README.md")

    git(repo, "tag", f"v{new}")
    expect_refusal(repo, [new], "exists already", "an existing tag")
    git(repo, "tag", "--delete", f"v{new}")

    changelog = (repo / "docs" / "changelog.md").read_text(encoding="utf-8")
    without = changelog.replace("## Unreleased\n", "", 1)
    with_changelog(repo, without, [new], "no '## Unreleased' section", "a changelog without Unreleased")
    start = changelog.index("## Unreleased\n") + len("## Unreleased\n")
    following = re.search(r"^## ", changelog[start:], re.MULTILINE)
    end = start + following.start() if following else len(changelog)
    empty = changelog[:start] + "\n### Nothing yet\n\n" + changelog[end:]
    with_changelog(repo, empty, [new], "is empty", "an empty Unreleased section")


def check_dist(repo: Path, new: str) -> None:
    """The eight files in dist/: names, versions, exact pins, and ``twine check`` once more."""
    dist = repo / "dist"
    expected = sorted(
        name
        for package in PACKAGES
        for name in (f"{package.file_stem}-{new}.tar.gz", f"{package.file_stem}-{new}-py3-none-any.whl")
    )
    built = sorted(path.name for path in dist.iterdir())
    expect(built == expected, f"dist/ holds {built}, expected {expected}")
    for package in PACKAGES:
        wheel = dist / f"{package.file_stem}-{new}-py3-none-any.whl"
        with zipfile.ZipFile(wheel) as archive:
            meta = parse_metadata(archive.read(f"{package.file_stem}-{new}.dist-info/METADATA").decode())
        sdist = dist / f"{package.file_stem}-{new}.tar.gz"
        with tarfile.open(sdist) as tar:
            member = tar.extractfile(f"{package.file_stem}-{new}/PKG-INFO")
            assert member is not None
            pkg_info = parse_metadata(member.read().decode())
        for where, found in ((wheel.name, meta), (sdist.name, pkg_info)):
            expect(found.get("Version") == new, f"{where}: Version {found.get('Version')!r}, not {new}")
            pins = sorted(
                req.replace(" ", "")
                for req in found.get_all("Requires-Dist", [])
                if req.startswith("spoc-workers")
            )
            want = sorted(f"{pin}=={new}" for pin in package.pins)
            expect(pins == want, f"{where}: sibling requirements {pins}, expected {want}")
    output = run(
        [sys.executable, "-m", "twine", "--no-color", "check", "--strict", *sorted(dist.iterdir())], repo
    )
    expect(output.count("PASSED") == len(expected), f"twine check:\n{output}")
    ok(f"dist/: {len(built)} files of {new}, exact pins =={new}, twine check --strict PASSED")


def check_dry_run(repo: Path, current: str, new: str) -> str:
    """Step 3: the dry-run release of ``new``; return the upload step it printed."""
    start = git(repo, "rev-parse", "HEAD").strip()
    output = release(repo, new)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    expect(read(repo / "VERSION") == new, f"VERSION is {read(repo / 'VERSION')}, not {new}")
    changelog = (repo / "docs" / "changelog.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## .*$", changelog, re.MULTILINE)
    expect(headings[0] == f"## {new} ({today})", f"the first changelog heading is {headings[0]!r}")
    expect("## Unreleased" not in headings, "the changelog still has an Unreleased section")
    ok(f"VERSION {current} -> {new}; the changelog's Unreleased section is now {headings[0]!r}")

    expect(git(repo, "log", "-1", "--format=%s").strip() == f"Release {new}", "HEAD is not 'Release X.Y.Z'")
    expect(git(repo, "rev-parse", "HEAD~1").strip() == start, "the release made more than one commit")
    changed = sorted(git(repo, "diff", "--name-only", "HEAD~1", "HEAD").split())
    expect(changed == ["VERSION", "docs/changelog.md"], f"the release commit changes {changed}")
    expect(git(repo, "cat-file", "-t", f"v{new}").strip() == "tag", f"v{new} is not an annotated tag")
    tagged = git(repo, "rev-parse", f"v{new}^{{commit}}").strip()
    expect(tagged == git(repo, "rev-parse", "HEAD").strip(), f"v{new} does not tag the release commit")
    dirty = git(repo, "status", "--porcelain", "--untracked-files=all").strip()
    expect(not dirty, f"the tree is not clean after the release:\n{dirty}")
    ok(f"one commit 'Release {new}' (VERSION, docs/changelog.md), annotated tag v{new} on it, clean tree")

    check_dist(repo, new)
    expect("upload" not in git(repo, "remote").lower(), "a remote was added")
    lines = [line for line in output.splitlines() if line.strip()]
    upload = lines[-1]
    expect(upload == f"git push --atomic origin main v{new}", f"the last line printed is {upload!r}")
    ok(f"the one upload step, printed last: {upload}")

    after = bumped(new, "patch")
    expect_refusal(repo, [after], "no '## Unreleased' section", f"another release ({after}) right after")
    release(repo, "--check-tag", f"v{new}")
    output = release(repo, "--check-tag", f"v{after}", refused=True)
    expect(f"is not 'v{new}'" in output, f"--check-tag v{after}: {output}")
    ok(f"--check-tag accepts v{new} and refuses v{after}")
    return upload


def check_push(repo: Path, origin: Path, upload: str, new: str) -> None:
    """Step 4: run the printed upload step against a local bare repository."""
    run(["git", "init", "--quiet", "--bare", "--initial-branch=main", origin], origin.parent)
    git(repo, "remote", "add", "origin", str(origin))
    run(shlex.split(upload), repo)
    refs = git(origin, "for-each-ref", "--format=%(refname)")
    expect(
        refs.split() == ["refs/heads/main", f"refs/tags/v{new}"], f"the bare repository has {refs.split()}"
    )
    same = git(origin, "rev-parse", "main").strip() == git(repo, "rev-parse", "HEAD").strip()
    expect(same, "origin's main is not the release commit")
    ok(f"`{upload}` pushed main and v{new} to the bare repository {origin.name}")


def pages_file(origin: Path, path: str) -> str:
    """A file of the gh-pages branch of the bare repository."""
    return git(origin, "show", f"gh-pages:{path}")


def check_docs_deploy(tmp: Path, origin: Path, new: str) -> None:
    """Step 5: the two docs workflows, each from a fresh clone; then the gh-pages branch."""
    main_clone, tag_clone = tmp / "ci-main", tmp / "ci-tag"
    run(["git", "clone", "--quiet", origin, main_clone], tmp)
    run([sys.executable, "tools/deploy_docs.py", "dev", "--push"], main_clone)
    ok("docs workflow (main): deploy_docs.py dev --push")
    run(["git", "clone", "--quiet", "--branch", f"v{new}", origin, tag_clone], tmp)
    run([sys.executable, "tools/deploy_docs.py", "release", "--push"], tag_clone)
    major, minor = new.split(".")[:2]
    docs = f"{major}.{minor}"
    ok(f"release workflow (tag v{new}): deploy_docs.py release --push")

    versions = json.loads(pages_file(origin, "versions.json"))
    by_version = {entry["version"]: entry for entry in versions}
    expect(sorted(by_version) == sorted([docs, "dev"]), f"versions.json lists {sorted(by_version)}")
    expect(
        by_version[docs]["title"] == new and by_version[docs]["aliases"] == ["latest"],
        f"versions.json: {by_version[docs]}",
    )
    expect(by_version["dev"]["aliases"] == [], f"versions.json: {by_version['dev']}")
    ok(f"versions.json: {json.dumps(versions)}")

    tree = set(git(origin, "ls-tree", "-r", "--name-only", "gh-pages").split())
    for version in (docs, "dev"):
        for page in ("index.html", "changelog/index.html", "releasing/index.html"):
            expect(f"{version}/{page}" in tree, f"gh-pages has no {version}/{page}")
        index = pages_file(origin, f"{version}/index.html")
        expect(
            re.search(r'"provider":\s*"mike"', index) is not None,
            f"{version}/index.html has no mike version selector",
        )
    ok(f"{docs}/ and dev/: index, changelog and releasing pages, each with the version selector (mike)")
    for page, target in (("index.html", f"../{docs}/"), ("changelog/index.html", f"../../{docs}/changelog/")):
        alias = pages_file(origin, f"latest/{page}")
        expect(target in alias, f"latest/{page} does not redirect to {target}:\n{alias[:400]}")
    root = pages_file(origin, "index.html")
    expect("latest/" in root, f"the root index.html does not redirect to latest/:\n{root[:400]}")
    ok(f"latest/ redirects into {docs}/ (latest/changelog/ too); the root redirects to latest/")


def main(argv: list[str] | None = None) -> int:
    """Run every step; return 0 when all passed, 1 otherwise."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    start = time.monotonic()
    before = snapshot(ROOT)
    try:
        current = read(ROOT / "VERSION")
        new = bumped(current, "patch")
        print(f"check_release: a dry-run release of {new} (VERSION is {current}) in a copy of {ROOT}")
        with tempfile.TemporaryDirectory(prefix="spoc-check-release-") as tmp_name:
            tmp = Path(tmp_name)
            repo, origin = tmp / "repo", tmp / "origin.git"
            with step("copy the checkout into a new repository"):
                copy_checkout(repo)
            with step("refusals: each leaves the copy as it was"):
                check_refusals(repo, current, new)
            with step(f"the dry-run release of {new} (builds and checks all four distributions)"):
                upload = check_dry_run(repo, current, new)
            with step("the printed upload step, against a local bare repository"):
                check_push(repo, origin, upload, new)
            with step("the docs workflows with mike, into the bare repository's gh-pages"):
                check_docs_deploy(tmp, origin, new)
        expect(snapshot(ROOT) == before, f"the checkout {ROOT} changed")
        ok(f"the checkout {ROOT} is unchanged")
    except CheckError as exc:
        print(f"\ncheck_release: FAILED after {time.monotonic() - start:.0f}s\n{exc}", file=sys.stderr)
        return 1
    print(f"\ncheck_release: the dry-run release and docs deploy passed in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
