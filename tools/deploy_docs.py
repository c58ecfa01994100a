"""Deploy the documentation site as one version of the hosted, versioned docs, with ``mike``.

Run by ``nox -s docs_deploy -- {dev,release} [--push]`` (which installs MkDocs and mike),
from the docs workflow (``dev``, on every push to main) and the release workflow
(``release``, once the four distributions are published)::

    python tools/deploy_docs.py dev --push       # the docs of main, as the version `dev`
    python tools/deploy_docs.py release --push   # the docs of VERSION X.Y.Z, as `X.Y` + `latest`

``mike`` commits each version's site into its own directory of the ``gh-pages`` branch
and lists them in ``versions.json``, which the version selector of mkdocs-material reads
(``extra.version.provider: mike`` in ``mkdocs.yml``); GitHub Pages serves that branch.

- ``dev``: the version ``dev``, titled ``dev (main)``.
- ``release`` of a final version X.Y.Z: the version ``X.Y`` titled ``X.Y.Z`` (a patch
  release replaces the docs of its minor release), with the alias ``latest`` moved onto
  it, and ``latest`` made the default: the site's root redirects there. Aliases are
  redirect pages (``--alias-type redirect``), which every static host serves, so that
  ``latest/changelog/`` (the Changelog URL of every package) always works.
- ``release`` of a pre-release (X.Y.ZrcN, or a .devN): the version ``X.Y.ZrcN``, and
  ``latest`` stays.

The site is first built with ``mkdocs build --strict``, so a warning stops the deploy.
Before deploying, the ``gh-pages`` branch of the remote (if any) is fetched, as mike
needs it to add a version rather than start a new branch. Without ``--push`` the commit
stays in the local ``gh-pages`` branch.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from version import parse, read

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "gh-pages"
LATEST = "latest"


def docs_version(version: str) -> tuple[str, str, list[str]]:
    """(mike version, title, aliases) for a release of ``version``."""
    parsed = parse(version)
    if parsed.is_prerelease:  # also a .devN
        return version, version, []
    return f"{parsed.major}.{parsed.minor}", version, [LATEST]


def run(*args: str) -> None:
    """Run a command in the repository, printing it first; stop with its status if it fails.

    This Python's scripts directory comes first on PATH: mike runs ``mkdocs`` from there.
    """
    print(f"$ {shlex.join(args)}", flush=True)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    status = subprocess.run(args, cwd=ROOT, env={**os.environ, "PATH": path}, check=False).returncode
    if status != 0:
        raise SystemExit(status)


def fetch_pages_branch(remote: str) -> None:
    """Fetch the remote's gh-pages branch (if it has one) as ``<remote>/gh-pages``, where mike looks."""
    probe = subprocess.run(
        ["git", "ls-remote", "--exit-code", "--heads", remote, BRANCH],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 2:  # the remote has no such branch: mike starts it
        print(f"{remote} has no {BRANCH} branch yet: this deploy starts it", flush=True)
        return
    if probe.returncode != 0:
        print(probe.stderr, file=sys.stderr)
        raise SystemExit(f"deploy_docs: cannot list the branches of {remote}")
    run("git", "fetch", "--quiet", remote, f"+refs/heads/{BRANCH}:refs/remotes/{remote}/{BRANCH}")


def main(argv: list[str] | None = None) -> int:
    """Build strictly, then deploy the docs of main or of the release in ``VERSION``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["dev", "release"], help="the docs of main, or of VERSION")
    parser.add_argument("--push", action="store_true", help=f"push {BRANCH} to the remote")
    parser.add_argument("--remote", default="origin", help="the git remote (default: origin)")
    args = parser.parse_args(argv)

    aliases: list[str]
    if args.what == "dev":
        version, title, aliases = "dev", "dev (main)", []
    else:
        version, title, aliases = docs_version(read(ROOT / "VERSION"))
    push = ["--push"] if args.push else []
    git_args = ["--remote", args.remote, "--branch", BRANCH, *push]

    with tempfile.TemporaryDirectory(prefix="spoc-docs-") as site:
        run(sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", site)
    fetch_pages_branch(args.remote)
    deploy = ["mike", "deploy", *git_args, "--title", title]
    if aliases:
        deploy += ["--update-aliases", "--alias-type", "redirect"]
    run(*deploy, version, *aliases)
    if LATEST in aliases:
        run("mike", "set-default", *git_args, LATEST)
    print(f"deploy_docs: {version} ({title}){' as ' + ', '.join(aliases) if aliases else ''} on {BRANCH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
