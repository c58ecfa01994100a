"""Every check of the project, as nox sessions. ``nox -l`` lists them.

The test matrix is every CPython from 3.10 up that pyenv provides, times the
three multiprocessing start methods, passed to the suite through the
``SPOC_WORKERS_START_METHOD`` environment variable (which every ProcessWorker honours).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ["spoc-workers-async", "spoc-workers-core", "spoc-workers-patterns", "spoc-workers-redis"]
PACKAGE_DIRS = [f"packages/{name}" for name in PACKAGES]
START_METHODS = ["fork", "spawn", "forkserver"]
IN_CI = bool(os.environ.get("CI"))

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
# In CI a missing interpreter is an error; on a laptop with fewer Pythons it is skipped.
nox.options.error_on_missing_interpreters = IN_CI
nox.options.sessions = ["matrix"]  # every check below, two at a time
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")


def _pyenv_pythons() -> list[str]:
    """Put every pyenv CPython >= 3.10 on PATH and return their 'X.Y' names."""
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
    found: dict[str, Path] = {}
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    if versions.is_dir():
        for entry in sorted(versions.iterdir()):
            match = re.fullmatch(r"3\.(\d+)\.\d+", entry.name)
            if match and int(match.group(1)) >= 10 and (entry / "bin").is_dir():
                found[f"3.{match.group(1)}"] = entry / "bin"
    if not found:  # no pyenv: test with the interpreter running nox
        return [f"{sys.version_info.major}.{sys.version_info.minor}"]
    os.environ["PATH"] = os.pathsep.join([*(str(p) for p in found.values()), os.environ.get("PATH", "")])
    return sorted(found, key=lambda v: int(v.split(".")[1]))


PYTHONS = _pyenv_pythons()


def install_project(session: nox.Session, *, uvloop: bool = True) -> None:
    """Editable installs of every package, in one installer call (see README)."""
    first = PACKAGE_DIRS[0] + ("[uvloop]" if uvloop else "")
    args: list[str] = []
    # core's http extra (prometheus_client): the HTTP endpoint's tests, types and docs need it.
    for path in [first, PACKAGE_DIRS[1] + "[http]", *PACKAGE_DIRS[2:]]:
        args += ["-e", path]
    session.install(*args)


TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "pyyaml>=6"]  # pyyaml: the docs' YAML blocks parse
# mkdocstrings formats long signatures with ruff, one parameter per line.
DOCS_DEPS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings-python>=1.10", "ruff>=0.6"]
"""What building the docs site needs: ``docs``, ``docs_deploy`` and ``release_check`` install it."""
PACKAGING_DEPS = ["build>=1.2", "twine>=6.1", "trove-classifiers", "packaging"]
"""What check_build.py and tools/ need: builds, ``twine check``, known classifiers, versions."""


@nox.session(python=PYTHONS)
@nox.parametrize("start_method", START_METHODS)
def tests(session: nox.Session, start_method: str) -> None:
    """The test suite, with uvloop installed, under one start method."""
    install_project(session, uvloop=True)
    session.install(*TEST_DEPS)
    session.run(
        "pytest",
        *session.posargs,
        env={"SPOC_WORKERS_START_METHOD": start_method, "SPOC_WORKERS_TEST_UVLOOP": "1"},
    )


WITHOUT_UVLOOP_TESTS = [
    "tests/aio",
    *(
        f"tests/core/{name}.py"
        for name in (
            "test_event_loops",
            "test_run_loop",
            "test_guide_core",
            "test_thread_worker",
            "test_process_worker",
            "test_is_running",
        )
    ),
]
"""Where the choice of event loop shows: the loop helpers, and the async hooks of both carriers."""


_WITHOUT_UVLOOP_PYTHONS = [PYTHONS[0], PYTHONS[-1]] if len(PYTHONS) > 1 else PYTHONS


@nox.session(python=_WITHOUT_UVLOOP_PYTHONS)
def tests_without_uvloop(session: nox.Session) -> None:
    """The tests of event loops and async hooks without uvloop installed (it is an optional extra)."""
    install_project(session, uvloop=False)
    session.install(*TEST_DEPS)
    session.run(
        "pytest",
        *WITHOUT_UVLOOP_TESTS,
        *session.posargs,
        env={"SPOC_WORKERS_START_METHOD": "forkserver", "SPOC_WORKERS_TEST_UVLOOP": "0"},
    )


MATRIX_JOBS_ENV = "SPOC_WORKERS_MATRIX_JOBS"
CELL_DEADLINE_ENV = "SPOC_WORKERS_CELL_DEADLINE"
CELL_DEADLINE = 20 * 60.0
"""Seconds a cell may run (``$SPOC_WORKERS_CELL_DEADLINE``): past it, it is killed and fails.

A cell takes 6 minutes at most today. Without a deadline one hung cell would hold
the whole matrix until CI's own limit, with no log to show where it hung; the
suite's watchdog (tests/conftest.py) normally ends a hang sooner, with every
thread's stack in the cell's log."""


CHECKS = ["lint", "typecheck", "docs", "examples", "build", "release_check"]
"""The sessions besides the test cells that a plain ``nox`` runs (through :func:`matrix`)."""


def _matrix_cells() -> list[str]:
    """Every session a plain ``nox`` runs, the longest first (forkserver runs the whole suite)."""
    cells = [
        f"tests-{python}(start_method='{method}')" for method in reversed(START_METHODS) for python in PYTHONS
    ]
    return [*cells, *(f"tests_without_uvloop-{python}" for python in _WITHOUT_UVLOOP_PYTHONS), *CHECKS]


def _cell_log(logs: Path, cell: str) -> Path:
    return logs / f"{re.sub(r'[^A-Za-z0-9.]+', '-', cell).strip('-')}.log"


@nox.session(python=False)
def matrix(session: nox.Session) -> None:
    """Every check: each cell of ``tests`` and ``tests_without_uvloop``, then lint, typecheck, docs,
    examples, build and release_check, two at a time (``$SPOC_WORKERS_MATRIX_JOBS``).

    The suite mostly waits (on processes, pipes, deadlines), so cells side by
    side finish sooner than one after another. Each is its own ``nox -s`` run
    with its own log under ``.nox/matrix/``; a failed one's log is printed
    whole at the end. Arguments after ``--`` go to every test cell's pytest.
    """
    jobs = max(1, int(os.environ.get(MATRIX_JOBS_ENV, "2")))
    deadline = float(os.environ.get(CELL_DEADLINE_ENV, CELL_DEADLINE))
    logs = ROOT / ".nox" / "matrix"
    logs.mkdir(parents=True, exist_ok=True)
    cells = _matrix_cells()
    waiting = list(cells)
    running: dict[str, tuple[subprocess.Popen[bytes], float, str]] = {}
    failed: list[str] = []
    begun = time.monotonic()
    try:
        _run_cells(session, jobs, deadline, logs=logs, waiting=waiting, running=running, failed=failed)
    finally:
        for proc, _, _ in running.values():  # interrupted: no cell outlives the session
            _kill_cell(proc)
    session.log(f"{len(cells)} cells in {(time.monotonic() - begun) / 60:.1f} min, {jobs} at a time")
    for cell in failed:
        log_path = _cell_log(logs, cell)
        print(f"\n===== {cell}: {log_path} =====\n{log_path.read_text(errors='replace')}", flush=True)
    if failed:
        session.error(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


def _kill_cell(proc: subprocess.Popen[bytes]) -> None:
    """End a cell and everything it started (its own process group): nox, pytest, their children."""
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signal_number)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        return


def _run_cells(
    session: nox.Session,
    jobs: int,
    deadline: float,
    *,
    logs: Path,
    waiting: list[str],
    running: dict[str, tuple[subprocess.Popen[bytes], float, str]],
    failed: list[str],
) -> None:
    """Start cells while fewer than ``jobs`` run; log each as it ends."""
    number = 0
    while waiting or running:
        while waiting and len(running) < jobs:
            cell = waiting.pop(0)
            number += 1
            log = _cell_log(logs, cell).open("wb")
            # Each cell's own temporary directory: pytest prunes old ones, a neighbour's too.
            basetemp = f"/tmp/spoc-workers-matrix-{os.getpid()}-{number}"
            command = [sys.executable, "-m", "nox", "-s", cell]
            if cell.startswith("tests"):  # a test cell: pytest's arguments
                command += ["--", f"--basetemp={basetemp}", *session.posargs]
            running[cell] = (
                subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
                ),
                time.monotonic(),
                basetemp,
            )
            log.close()
        time.sleep(0.5)
        for cell, (proc, started, basetemp) in list(running.items()):
            if proc.poll() is None:
                if time.monotonic() - started < deadline:
                    continue
                _kill_cell(proc)
                with _cell_log(logs, cell).open("a") as log_file:
                    log_file.write(f"\n[matrix] killed: still running after {deadline / 60:.0f} min\n")
            del running[cell]
            shutil.rmtree(basetemp, ignore_errors=True)
            took = time.monotonic() - started
            verdict = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            session.log(f"{verdict:>6}  {cell}  {took / 60:.1f} min")
            if proc.returncode != 0:
                failed.append(cell)


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting; the GitHub workflows against their schema."""
    session.install("ruff>=0.6", "check-jsonschema>=0.29")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    workflows = sorted(str(path) for path in (ROOT / ".github" / "workflows").glob("*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)


@nox.session(python=PYTHONS[-1])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package."""
    install_project(session, uvloop=True)
    session.install("mypy>=1.10")
    session.run("mypy", "--strict")


@nox.session(python=PYTHONS[-1])
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning fails, and so does a private name on an API page."""
    install_project(session, uvloop=False)
    # mkdocstrings formats long signatures with ruff (in DOCS_DEPS), one parameter per line.
    session.install(*DOCS_DEPS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
    session.run("python", "tests/support/check_api_pages.py", str(ROOT / "site"))


@nox.session(python=PYTHONS[-1])
def examples(session: nox.Session) -> None:
    """Run every script in examples/; each must end by itself, successfully, in time."""
    install_project(session, uvloop=True)
    session.run("python", "tests/support/run_examples.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def build(session: nox.Session) -> None:
    """Build sdists and wheels, check the sibling pins, install each subset in a fresh venv.

    ``-- --dist-dir DIR`` keeps the checked files in DIR (the release workflow publishes them).
    """
    session.install(*PACKAGING_DEPS)
    session.run("python", "tests/packaging/check_build.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def release(session: nox.Session) -> None:
    """Release X.Y.Z: ``nox -s release -- X.Y.Z`` (docs/releasing.md). Prints the one upload step."""
    session.install(*PACKAGING_DEPS)
    session.run("python", "tools/release.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def release_check(session: nox.Session) -> None:
    """A dry-run release and docs deploy in a temporary copy of the repository; checks every artefact."""
    install_project(session, uvloop=False)
    session.install(*PACKAGING_DEPS, *DOCS_DEPS, "mike>=2.1")
    session.run("python", "tests/packaging/check_release.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def docs_deploy(session: nox.Session) -> None:
    """Deploy the docs with mike: ``-- dev`` (main) or ``-- release`` (VERSION), ``--push`` to push."""
    install_project(session, uvloop=False)
    session.install(*DOCS_DEPS, "mike>=2.1", "packaging")
    session.run("python", "tools/deploy_docs.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def bench(session: nox.Session) -> None:
    """Benchmarks: a table on stdout and JSON under .bench/ (``-- --quick`` for a smoke run)."""
    install_project(session, uvloop=True)
    session.run("python", "tests/benchmarks/run.py", *session.posargs)


@nox.session(python=False)
def version(session: nox.Session) -> None:
    """Show or bump the one version of all packages: ``nox -s version -- minor|patch|major|X.Y.Z``."""
    # nox's own interpreter, which has `packaging` (a nox dependency): nothing to install.
    session.run(sys.executable, str(ROOT / "tools" / "version.py"), *session.posargs, external=True)
