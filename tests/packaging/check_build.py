"""Build every spoc-workers distribution and check what a user would get from it.

Run by ``nox -s build``, or directly from any Python that has ``build`` installed::

    python tests/packaging/check_build.py

Steps, each printed as it runs; the first failure stops the script with exit status 1:

The four distributions, each under ``packages/``, each pinning the one before it to
exactly its own version: spoc-workers-async (``spoc.workers.aio``), spoc-workers-core
(``spoc.workers``), spoc-workers-patterns (``spoc.workers.patterns``) and
spoc-workers-redis (``spoc.workers.redis``, which also needs ``redis`` from PyPI).

0. Fresh venvs (``python -m venv``, with pip) for the installs below, made in parallel; the
   one for step 4 first downloads, into a local wheelhouse, the build backend and the
   third-party runtime requirements (``redis``), each with its dependencies.
1. ``python -m build`` of each package: the sdist, then the wheel built *from that sdist*
   (as pip builds an sdist), into a fresh dist directory. The build backend comes from a
   local wheelhouse; the package index is a local server that records what it is asked.
2. Each sdist and wheel: name, version (== the ``VERSION`` file), the exact sibling pins,
   the third-party requirements (``redis`` for spoc-workers-redis, none for the others),
   the extras (``uvloop`` of async, ``http`` of core), and the file list (no
   ``spoc/__init__.py`` anywhere, only core ships ``spoc/workers/__init__.py``, each ships
   its ``py.typed``, no file in two wheels).
3. Installs of each subset from the dist directory (``--no-index``) in fresh venvs:
   async; core (which must pull async); patterns (which must pull both); redis (which
   must pull the other three, and finds ``redis`` in the wheelhouse, which holds no
   spoc-workers-* file). In each, ``check_imports.py`` checks the imports and runs a
   small smoke test.
4. The developer setup: one ``pip install -e`` of all four packages (the index may be used).
5. A non-editable install of the four package directories of the checkout, with the
   recording index and the wheelhouse: pip must never ask the index for a spoc-workers-* name.

What a user sees of each distribution (``pip show``, its PyPI page) is checked in steps 2
and 6: the long description is the package's README, the license is MIT with the
repository's ``LICENSE`` file shipped in the sdist and the wheel, every classifier is a
known one (``trove-classifiers``), the Python classifiers are the versions CI tests
(``.github/workflows/ci.yml``) and ``Requires-Python`` their lowest; the project URLs are
the same in all four and agree with ``mkdocs.yml`` (``site_url``, ``repo_url``), the
root README links to the hosted docs and changelog, and SECURITY.md to the repository.

6. ``twine check --strict`` of every built file: what PyPI would refuse or render badly.

With ``--dist-dir DIR``, the eight built files are copied into ``DIR`` once every check has
passed (``tools/release.py`` and the release workflow publish them from there).

Venvs are made with the running interpreter (``sys.executable``); everything lives in a
temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import email.parser
import http.server
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
CHECK_IMPORTS = ROOT / "tests" / "packaging" / "check_imports.py"
LICENSE = ROOT / "LICENSE"
CI_WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
MKDOCS = ROOT / "mkdocs.yml"
URL_LABELS = ("Homepage", "Documentation", "Changelog", "Source", "Issues")
"""The ``[project.urls]`` every distribution has, in this order."""
REQUIRED_CLASSIFIERS = ("Typing :: Typed", "Operating System :: POSIX :: Linux")
"""Linux: the code relies on /proc, pidfds and prctl, and CI tests on Linux only."""
BUILD_BACKEND = "hatchling"
"""The build backend of every package; the wheelhouse holds it with its dependencies."""
OUTPUT_TAIL = 60
"""How many lines of a failed command's output to show."""
PARALLEL = 3
"""At most this many venv creations or builds at once (each thread just waits for its subprocess)."""

T = TypeVar("T")


@dataclass(frozen=True)
class Package:
    """What one distribution must look like."""

    name: str
    top: str
    """The import directory it owns: every file of its wheel is under it."""
    pins: tuple[str, ...] = ()
    """Siblings it requires at exactly its own version."""
    extras: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    """The other distributions it requires unconditionally (names): its third-party dependencies."""

    @property
    def path(self) -> Path:
        """The package's directory in the checkout."""
        return ROOT / "packages" / self.name

    @property
    def file_stem(self) -> str:
        """The distribution name as sdist and wheel file names spell it."""
        return self.name.replace("-", "_")


ASYNC = Package("spoc-workers-async", "spoc/workers/aio/", extras=("uvloop",))
CORE = Package("spoc-workers-core", "spoc/workers/", pins=("spoc-workers-async",), extras=("http",))
PATTERNS = Package("spoc-workers-patterns", "spoc/workers/patterns/", pins=("spoc-workers-core",))
REDIS = Package(
    "spoc-workers-redis", "spoc/workers/redis/", pins=("spoc-workers-patterns",), requires=("redis",)
)
PACKAGES = [ASYNC, CORE, PATTERNS, REDIS]
SUBSETS = [("async", ASYNC), ("core", CORE), ("all", PATTERNS), ("redis", REDIS)]
"""check_imports.py's name of each subset, and the one distribution installed to get it."""
EVERYTHING = "redis"
"""check_imports.py's subset with every distribution: what the developer and checkout installs hold."""
RUNTIME_REQUIREMENTS = sorted({name for package in PACKAGES for name in package.requires})
"""The third-party distributions the packages require; the wheelhouse holds them (and theirs)."""


class CheckError(Exception):
    """A check failed; the message says which and why."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`CheckError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckError(message)


def ok(message: str) -> None:
    """Print one passed check."""
    print(f"  ok    {message}", flush=True)


def normalize(name: str) -> str:
    """A distribution name normalized as in PEP 503."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_version() -> str:
    """The one version of every package, from the repository's ``VERSION`` file."""
    version = (ROOT / "VERSION").read_text(encoding="utf-8").strip()
    expect(bool(re.fullmatch(r"\S+", version)), f"VERSION holds {version!r}, not one version")
    return version


def run(cmd: Sequence[str | Path], *, env: dict[str, str], cwd: Path, echo: bool = True) -> str:
    """Run ``cmd``; return its combined output, or raise :class:`CheckError` showing its tail.

    The command is printed first unless ``echo`` is false (the caller printed it).
    """
    args = [str(arg) for arg in cmd]
    if echo:
        print(f"  $ {shlex.join(args)}", flush=True)
    proc = subprocess.run(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.rstrip().splitlines()[-OUTPUT_TAIL:])
        raise CheckError(f"command failed with exit status {proc.returncode}: {shlex.join(args)}\n{tail}")
    return proc.stdout


def base_env() -> dict[str, str]:
    """This process's environment without what would make a subprocess see another environment."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def isolated_env(*, index_url: str | None = None, find_links: Path | None = None) -> dict[str, str]:
    """An environment in which pip reads no configuration but what is given here.

    No ``PIP_*`` variable of this machine and no pip configuration file applies
    (``PIP_CONFIG_FILE`` is the null device), so no extra index, find-links
    directory or constraint leaks in. The settings also reach the pip that
    ``build`` and pip itself run to install a build backend.
    """
    env = {name: value for name, value in base_env().items() if not name.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    if index_url is None:
        env["PIP_NO_INDEX"] = "1"
    else:
        env["PIP_INDEX_URL"] = index_url
    if find_links is not None:
        env["PIP_FIND_LINKS"] = str(find_links)
    local = "127.0.0.1,localhost"
    env["NO_PROXY"] = env["no_proxy"] = ",".join(filter(None, [local, env.get("NO_PROXY", "")]))
    return env


class RecordingIndex:
    """An empty package index on 127.0.0.1 that records every path it is asked for.

    pip treats its 404s as "no such project", so an install that needs a
    project from it fails; and the record shows what pip looked up.
    """

    def __init__(self) -> None:
        """Start serving in a daemon thread."""
        self.requests: list[str] = []
        lock = threading.Lock()
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            """Answers ``/simple/`` with an empty listing and everything else with 404."""

            def do_GET(self) -> None:
                """Record the path and answer."""
                with lock:
                    requests.append(self.path)
                if self.path.rstrip("/") == "/simple":
                    body = b"<!DOCTYPE html><html><body></body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet: the record is kept in ``requests``."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="index", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/simple/"

    def projects(self) -> list[str]:
        """The normalized project names asked for since the last :meth:`clear`."""
        names = []
        for path in list(self.requests):
            match = re.fullmatch(r"/simple/([^/]+)/?", path.split("?")[0])
            if match and normalize(match.group(1)) not in names:
                names.append(normalize(match.group(1)))
        return names

    def clear(self) -> None:
        """Forget the requests recorded so far."""
        self.requests.clear()

    def expect_no_spoc_lookup(self, what: str) -> None:
        """Fail if pip asked the index for any spoc-workers-* project during ``what``."""
        asked = self.projects()
        spoc = [name for name in asked if name.startswith("spoc-workers")]
        expect(not spoc, f"{what}: pip asked the package index for {spoc}")
        shown = ", ".join(asked) if asked else "nothing"
        ok(f"{what}: the index was asked for {shown}; never for a spoc-workers-* name")

    def __enter__(self) -> RecordingIndex:
        """Return the running index."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a step's title, then its duration when it ends."""
    print(f"\n==> {title}", flush=True)
    start = time.monotonic()
    yield
    print(f"    ({time.monotonic() - start:.1f}s)", flush=True)


def parallel(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``jobs`` in threads (their work is in subprocesses); return their results in order.

    Every job runs to its end; then the first failure, in order, is raised.
    """
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), PARALLEL))) as pool:
        futures = [pool.submit(job) for job in jobs]
        wait(futures)
    return [future.result() for future in futures]


def make_venvs(tmp: Path, names: Sequence[str]) -> dict[str, Path]:
    """Create fresh venvs with pip, ``tmp/venv-<name>``, from ``sys.executable``; return their Pythons."""
    paths = [tmp / f"venv-{name}" for name in names]
    commands: list[list[str | Path]] = [[sys.executable, "-m", "venv", path] for path in paths]
    for command in commands:
        print(f"  $ {shlex.join(map(str, command))}", flush=True)
    parallel([partial(run, command, env=base_env(), cwd=tmp, echo=False) for command in commands])
    pythons = {
        name: path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        for name, path in zip(names, paths, strict=True)
    }
    for python in pythons.values():
        expect(python.exists(), f"{python} does not exist")
    ok(f"{len(names)} venvs: {', '.join(path.name for path in paths)}")
    return pythons


def check_imports(python: Path, subset: str, version: str, mode: str, cwd: Path) -> None:
    """Run check_imports.py for ``subset`` with ``python`` (isolated mode, outside the checkout)."""
    output = run(
        [python, "-I", CHECK_IMPORTS, subset, "--version", version, "--mode", mode],
        env=isolated_env(),
        cwd=cwd,
    )
    print("    " + output.rstrip().replace("\n", "\n    "), flush=True)


def build_all(tmp: Path, dist: Path, wheelhouse: Path, index: RecordingIndex, version: str) -> None:
    """Build the sdist, then the wheel from that sdist, of every package (in parallel) into ``dist``."""
    env = isolated_env(index_url=index.url, find_links=wheelhouse)
    index.clear()
    outdirs = [tmp / "build" / package.name for package in PACKAGES]
    commands: list[list[str | Path]] = [
        [sys.executable, "-m", "build", package.path, "--outdir", outdir]
        for package, outdir in zip(PACKAGES, outdirs, strict=True)
    ]
    for command in commands:
        print(f"  $ {shlex.join(map(str, command))}", flush=True)
    outputs = parallel([partial(run, command, env=env, cwd=ROOT, echo=False) for command in commands])
    for package, outdir, output in zip(PACKAGES, outdirs, outputs, strict=True):
        built = sorted(path.name for path in outdir.iterdir())
        expected = sorted(
            [f"{package.file_stem}-{version}.tar.gz", f"{package.file_stem}-{version}-py3-none-any.whl"]
        )
        expect(built == expected, f"{package.name}: built {built}, expected {expected}")
        expect(
            "Building wheel from sdist" in output, f"{package.name}: the wheel was not built from the sdist"
        )
        for name in built:
            shutil.copy2(outdir / name, dist / name)
        ok(f"{package.name}: {', '.join(built)} (the wheel built from the sdist)")
    index.expect_no_spoc_lookup("building")


def parse_metadata(text: str) -> Message:
    """Parse core metadata (PKG-INFO or METADATA) headers."""
    return email.parser.HeaderParser().parsestr(text)


def check_core_metadata(package: Package, meta: Message, version: str, where: str) -> None:
    """Check name, version, sibling pins and extras in the core metadata of ``package``."""
    expect(normalize(meta.get("Name", "")) == package.name, f"{where}: Name is {meta.get('Name')!r}")
    expect(
        meta.get("Version") == version, f"{where}: Version is {meta.get('Version')!r}, VERSION is {version}"
    )
    requires = [req.replace(" ", "") for req in meta.get_all("Requires-Dist", [])]
    unconditional = []
    for pin in package.pins:
        expect(
            f"{pin}=={version}" in requires, f"{where}: no `Requires-Dist: {pin}=={version}` in {requires}"
        )
    for req in requires:
        match = re.match(r"[A-Za-z0-9._-]+", req)
        name = normalize(match.group(0)) if match else req
        if name.startswith("spoc-workers"):
            expect(
                name in package.pins and req == f"{name}=={version}",
                f"{where}: `Requires-Dist: {req}` is not an exact pin of an expected sibling {package.pins}",
            )
        elif "extra==" not in req.partition(";")[2]:
            unconditional.append(name)
    expect(
        sorted(unconditional) == sorted(normalize(name) for name in package.requires),
        f"{where}: requires {unconditional} besides its siblings, expected {list(package.requires)}"
        f" (Requires-Dist: {requires})",
    )
    extras = meta.get_all("Provides-Extra", [])
    expect(
        sorted(extras) == sorted(package.extras),
        f"{where}: Provides-Extra {extras}, expected {package.extras}",
    )


def tested_pythons() -> list[str]:
    """The Python versions CI tests: the ``python`` list of the matrix in ``.github/workflows/ci.yml``."""
    text = CI_WORKFLOW.read_text(encoding="utf-8")
    match = re.search(r"^\s+python: \[([^\]]*)\]", text, re.MULTILINE)
    expect(match is not None, f"{CI_WORKFLOW.relative_to(ROOT)}: no `python: [...]` matrix line")
    assert match is not None
    versions = re.findall(r"[\"']?(3\.\d+)[\"']?", match.group(1))
    expect(bool(versions), f"{CI_WORKFLOW.relative_to(ROOT)}: no Python version in {match.group(0).strip()}")
    return sorted(versions, key=lambda v: int(v.split(".")[1]))


def mkdocs_setting(name: str) -> str:
    """A top-level ``name: value`` setting of ``mkdocs.yml`` (for ``site_url`` and ``repo_url``)."""
    match = re.search(rf"^{name}:\s*(\S+)\s*$", MKDOCS.read_text(encoding="utf-8"), re.MULTILINE)
    expect(match is not None, f"mkdocs.yml has no {name}")
    assert match is not None
    return match.group(1)


def project_urls(meta: Message) -> list[tuple[str, str]]:
    """The ``Project-URL`` entries of core metadata as (label, URL) pairs, in order."""
    pairs = []
    for entry in meta.get_all("Project-URL", []):
        label, _, url = entry.partition(",")
        pairs.append((label.strip(), url.strip()))
    return pairs


def check_public_metadata(package: Package, meta: Message, where: str) -> None:
    """What ``pip show`` and the PyPI page show: README, license, classifiers, Python versions, URLs."""
    readme = (package.path / "README.md").read_text(encoding="utf-8")
    body = meta.get_payload()
    expect(
        isinstance(body, str) and body.strip() == readme.strip(),
        f"{where}: the long description is not packages/{package.name}/README.md",
    )
    expect(
        meta.get("Description-Content-Type") == "text/markdown",
        f"{where}: Description-Content-Type is {meta.get('Description-Content-Type')!r}",
    )
    expect(bool(meta.get("Summary", "").strip()), f"{where}: no Summary")
    expect(bool(meta.get("Keywords", "").strip()), f"{where}: no Keywords")
    expect(
        meta.get("License-Expression") == "MIT",
        f"{where}: License-Expression {meta.get('License-Expression')!r}",
    )
    expect(
        meta.get_all("License-File", []) == ["LICENSE"],
        f"{where}: License-File {meta.get_all('License-File', [])}, expected ['LICENSE']",
    )
    classifiers = meta.get_all("Classifier", [])
    import trove_classifiers

    unknown = [c for c in classifiers if c not in trove_classifiers.classifiers]
    expect(not unknown, f"{where}: classifiers PyPI does not know: {unknown}")
    missing = [c for c in REQUIRED_CLASSIFIERS if c not in classifiers]
    expect(not missing, f"{where}: lacks the classifiers {missing}")
    pythons = [
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    tested = tested_pythons()
    expect(pythons == tested, f"{where}: Python classifiers {pythons}, but CI tests {tested} (ci.yml)")
    expect(
        meta.get("Requires-Python") == f">={tested[0]}",
        f"{where}: Requires-Python {meta.get('Requires-Python')!r}, but CI tests from {tested[0]} up",
    )
    urls = project_urls(meta)
    labels = [label for label, _ in urls]
    expect(labels == list(URL_LABELS), f"{where}: Project-URL labels {labels}, expected {list(URL_LABELS)}")
    by_label = dict(urls)
    site, repo = mkdocs_setting("site_url"), mkdocs_setting("repo_url")
    expected = {"Documentation": site, "Changelog": f"{site}latest/changelog/", "Source": repo}
    wrong = {label: by_label[label] for label, url in expected.items() if by_label[label] != url}
    expect(not wrong, f"{where}: Project-URL {wrong} disagree with mkdocs.yml ({expected})")


def check_readme_links() -> None:
    """README.md links to the hosted docs and changelog, SECURITY.md to the repository's reporting form."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    site, repo = mkdocs_setting("site_url"), mkdocs_setting("repo_url")
    for url in (site, f"{site}latest/changelog/"):
        expect(url in readme, f"README.md does not link to {url}")
    report = f"{repo}/security/advisories/new"
    expect(
        report in (ROOT / "SECURITY.md").read_text(encoding="utf-8"), f"SECURITY.md does not link to {report}"
    )
    ok(f"README.md links to the hosted docs and changelog ({site}), SECURITY.md to {report}")


def check_sdist(package: Package, sdist: Path, version: str) -> None:
    """Check the sdist's PKG-INFO and files."""
    top = f"{package.file_stem}-{version}"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        member = tar.extractfile(f"{top}/PKG-INFO")
        expect(member is not None, f"{sdist.name}: no {top}/PKG-INFO")
        assert member is not None
        meta = parse_metadata(member.read().decode("utf-8"))
        check_core_metadata(package, meta, version, f"{sdist.name} PKG-INFO")
        for needed in (
            "pyproject.toml",
            "hatch_build.py",
            "README.md",
            "LICENSE",
            f"src/{package.top}py.typed",
        ):
            expect(f"{top}/{needed}" in names, f"{sdist.name}: {needed} is missing")
        license_file = tar.extractfile(f"{top}/LICENSE")
        assert license_file is not None
        expect(
            license_file.read().decode("utf-8") == LICENSE.read_text(encoding="utf-8"),
            f"{sdist.name}: its LICENSE differs from the repository's LICENSE",
        )
    check_public_metadata(package, meta, f"{sdist.name} PKG-INFO")
    outside = [name for name in names if not name.startswith(f"{top}/")]
    expect(not outside, f"{sdist.name}: files outside {top}/: {outside}")
    expect(f"{top}/src/spoc/__init__.py" not in names, f"{sdist.name}: ships spoc/__init__.py")
    ok(f"{sdist.name}: PKG-INFO {meta['Name']} {meta['Version']}, {len(names)} files")


def wheel_files(wheel: Path) -> tuple[list[str], Message]:
    """The files of ``wheel`` outside its .dist-info, and its METADATA.

    Also checks that its .dist-info holds the repository's LICENSE (``licenses/LICENSE``).
    """
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = [name for name in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", name)]
        expect(len(metadata) == 1, f"{wheel.name}: {len(metadata)} METADATA files")
        meta = parse_metadata(archive.read(metadata[0]).decode("utf-8"))
        license_path = metadata[0].replace("/METADATA", "/licenses/LICENSE")
        expect(license_path in names, f"{wheel.name}: no {license_path}")
        expect(
            archive.read(license_path).decode("utf-8") == LICENSE.read_text(encoding="utf-8"),
            f"{wheel.name}: its {license_path} differs from the repository's LICENSE",
        )
    return [name for name in names if not name.split("/")[0].endswith(".dist-info")], meta


def check_wheels(dist: Path, version: str) -> None:
    """Check every wheel's METADATA and file list, and that no two wheels share a file."""
    owner: dict[str, str] = {}
    urls: dict[str, list[tuple[str, str]]] = {}
    for package in PACKAGES:
        wheel = dist / f"{package.file_stem}-{version}-py3-none-any.whl"
        files, meta = wheel_files(wheel)
        check_core_metadata(package, meta, version, f"{wheel.name} METADATA")
        check_public_metadata(package, meta, f"{wheel.name} METADATA")
        urls[package.name] = project_urls(meta)
        pins = ", ".join(f"{pin}=={version}" for pin in package.pins) or "no sibling"
        requires = ", ".join(package.requires) or "nothing else"
        extras = ", ".join(package.extras) or "none"
        ok(
            f"{wheel.name}: Name {meta['Name']}, Version {meta['Version']}, requires {pins}"
            f" and {requires}, extras: {extras}"
        )

        expect("spoc/__init__.py" not in files, f"{wheel.name}: ships spoc/__init__.py (spoc is a namespace)")
        has_init = "spoc/workers/__init__.py" in files
        expect(
            has_init == (package is CORE),
            f"{wheel.name}: {'ships' if has_init else 'lacks'} spoc/workers/__init__.py (only core ships it)",
        )
        expect(f"{package.top}py.typed" in files, f"{wheel.name}: no {package.top}py.typed")
        others = [
            other.top for other in PACKAGES if other is not package and other.top.startswith(package.top)
        ]
        stray = [f for f in files if not f.startswith(package.top) or f.startswith(tuple(others))]
        expect(not stray, f"{wheel.name}: files outside {package.top} (or in a sibling's directory): {stray}")
        shared = [f"{f} (also in {owner[f]})" for f in files if f in owner]
        expect(not shared, f"{wheel.name}: files shipped by two wheels: {shared}")
        owner.update(dict.fromkeys(files, package.name))
        init = "ships spoc/workers/__init__.py" if has_init else "no spoc/workers/__init__.py"
        ok(f"{wheel.name}: {len(files)} files under {package.top}, {init}, py.typed, no spoc/__init__.py")
        pythons = ", ".join(tested_pythons())
        classifiers = len(meta.get_all("Classifier", []))
        ok(
            f"{wheel.name}: README as long description, MIT with LICENSE,"
            f" Python {pythons} (as CI), {classifiers} known classifiers"
        )
    differing = {name: entries for name, entries in urls.items() if entries != urls[PACKAGES[0].name]}
    expect(not differing, f"the project URLs differ between distributions: {urls}")
    ok(
        "the same project URLs in all four, agreeing with mkdocs.yml: "
        + ", ".join(f"{label} {url}" for label, url in urls[PACKAGES[0].name])
    )
    check_readme_links()


def with_siblings(package: Package) -> list[Package]:
    """``package`` and every sibling it pins, directly or not."""
    by_name = {other.name: other for other in PACKAGES}
    found = [package]
    for each in found:
        found += [by_name[pin] for pin in each.pins if by_name[pin] not in found]
    return found


def check_subsets(pythons: dict[str, Path], tmp: Path, dist: Path, wheelhouse: Path, version: str) -> None:
    """Install each subset from ``dist`` into its fresh venv (``--no-index``) and check its imports.

    A subset that needs third-party distributions also finds them in ``wheelhouse``,
    which holds no spoc-workers-* file: those come from ``dist`` alone.
    """
    env = isolated_env()
    for subset, package in SUBSETS:
        requires = sorted({name for each in with_siblings(package) for name in each.requires})
        links: list[str | Path] = ["--find-links", dist]
        if requires:
            links += ["--find-links", wheelhouse]
        also = f" (and {', '.join(requires)} from the wheelhouse)" if requires else ""
        print(f"  -- subset {subset!r}: pip install {package.name}{also}", flush=True)
        python = pythons[subset]
        run([python, "-m", "pip", "install", "--no-index", *links, package.name], env=env, cwd=tmp)
        check_imports(python, subset, version, "installed", tmp)


def check_editable(python: Path, tmp: Path, version: str) -> None:
    """The developer setup: one ``pip install -e`` of the four packages into the fresh venv of ``python``.

    pip runs with this machine's usual settings: it may use the index for the build
    backend and for the third-party requirements.
    """
    args: list[str | Path] = [python, "-m", "pip", "install"]
    for package in PACKAGES:
        args += ["-e", package.path.relative_to(ROOT)]
    run(args, env=base_env(), cwd=ROOT)
    check_imports(python, EVERYTHING, version, "editable", tmp)


def check_checkout_install(
    python: Path, tmp: Path, wheelhouse: Path, index: RecordingIndex, version: str
) -> None:
    """A non-editable install of the checkout's package directories, never asking the index for them.

    The build backend and the third-party requirements come from ``wheelhouse`` (find-links):
    the recording index serves nothing, and pip may ask it only for those names.
    """
    index.clear()
    paths = [f"./{package.path.relative_to(ROOT).as_posix()}" for package in PACKAGES]
    run(
        [python, "-m", "pip", "install", "--no-cache-dir", *paths],
        env=isolated_env(index_url=index.url, find_links=wheelhouse),
        cwd=ROOT,
    )
    index.expect_no_spoc_lookup("pip install of the checkout")
    check_imports(python, EVERYTHING, version, "installed", tmp)


def fill_wheelhouse(python: Path, wheelhouse: Path) -> None:
    """Download the build backend and the third-party runtime requirements, with their dependencies.

    One ``pip download`` (it may use the real index), for the Python of the venvs.
    The wheelhouse must then hold a wheel of each and no spoc-workers-* file.
    """
    run(
        [python, "-m", "pip", "download", "--quiet", "-d", wheelhouse, BUILD_BACKEND, *RUNTIME_REQUIREMENTS],
        env=base_env(),
        cwd=ROOT,
    )
    files = sorted(path.name for path in wheelhouse.iterdir())
    for name in [BUILD_BACKEND, *RUNTIME_REQUIREMENTS]:
        stem = name.replace("-", "_")
        expect(
            any(file.startswith(f"{stem}-") and file.endswith(".whl") for file in files),
            f"no wheel of {name} in the wheelhouse: {files}",
        )
    spoc = [file for file in files if normalize(file.split("-")[0]).startswith("spoc-workers")]
    expect(not spoc, f"the wheelhouse holds spoc-workers files: {spoc}")
    ok(f"wheelhouse: {', '.join(files)}")


def twine_check(dist: Path) -> None:
    """``twine check --strict`` of every file in ``dist``: metadata and long descriptions PyPI accepts."""
    files = sorted(dist.iterdir())
    command: list[str | Path] = [sys.executable, "-m", "twine", "--no-color", "check", "--strict", *files]
    output = run(command, env=base_env(), cwd=dist)
    passed = output.count("PASSED")
    expect(passed == len(files), f"twine check passed {passed} of {len(files)} files:\n{output}")
    ok(f"twine check --strict: {len(files)} files PASSED")


def copy_out(dist: Path, dist_dir: Path, version: str) -> None:
    """Copy the built files into ``dist_dir``, replacing any spoc-workers files already there."""
    dist_dir.mkdir(parents=True, exist_ok=True)
    for old in dist_dir.iterdir():
        if old.is_file() and old.name.startswith("spoc_workers_"):
            old.unlink()
    for path in sorted(dist.iterdir()):
        shutil.copy2(path, dist_dir / path.name)
    ok(f"{len(list(dist.iterdir()))} files of {version} in {dist_dir}")


def main(argv: list[str] | None = None) -> int:
    """Run every step; return 0 when all passed, 1 otherwise."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dist-dir",
        type=Path,
        help="copy the built sdists and wheels here once every check passed",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        version = read_version()
        for module, requirement in (
            ("build", "build>=1.2"),
            ("twine", "twine>=6.1"),
            ("trove_classifiers", "trove-classifiers"),
        ):
            expect(
                importlib.util.find_spec(module) is not None,
                f"{sys.executable} lacks the `{requirement}` package: pip install it (nox -s build does)",
            )
        print(f"check_build: spoc-workers {version} with Python {sys.version.split()[0]} ({sys.executable})")
        with tempfile.TemporaryDirectory(prefix="spoc-check-build-") as tmp_name, RecordingIndex() as index:
            tmp = Path(tmp_name)
            dist, wheelhouse = tmp / "dist", tmp / "wheelhouse"
            dist.mkdir()
            with step("fresh venvs for the installs below"):
                pythons = make_venvs(tmp, [subset for subset, _ in SUBSETS] + ["editable", "checkout"])
            with step(f"wheelhouse: {BUILD_BACKEND} (build backend), {', '.join(RUNTIME_REQUIREMENTS)}"):
                fill_wheelhouse(pythons["editable"], wheelhouse)
            with step("build: the sdist, then the wheel from the sdist, of each package"):
                build_all(tmp, dist, wheelhouse, index, version)
            with step("the sdists"):
                for package in PACKAGES:
                    check_sdist(package, dist / f"{package.file_stem}-{version}.tar.gz", version)
            with step("the wheels"):
                check_wheels(dist, version)
            with step("install each subset from the dist directory (--no-index; redis from the wheelhouse)"):
                check_subsets(pythons, tmp, dist, wheelhouse, version)
            with step("editable developer setup: pip install -e of all four, in one call"):
                check_editable(pythons["editable"], tmp, version)
            with step("non-editable install of the checkout's package directories, in one call"):
                check_checkout_install(pythons["checkout"], tmp, wheelhouse, index, version)
            with step("twine check --strict of every sdist and wheel"):
                twine_check(dist)
            if args.dist_dir is not None:
                with step(f"copy the built files to {args.dist_dir}"):
                    copy_out(dist, args.dist_dir.resolve(), version)
    except CheckError as exc:
        print(f"\ncheck_build: FAILED after {time.monotonic() - start:.0f}s\n{exc}", file=sys.stderr)
        return 1
    print(f"\ncheck_build: all packaging checks passed in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
