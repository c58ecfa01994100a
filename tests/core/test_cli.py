"""The ``spoc-workers`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests" / "support"  # where the command finds cli_targets and cli_broken


def spoc_workers(*args: str, cwd: Path = TESTS, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spoc.workers", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.no_processes
def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "spoc-workers"
    assert script.exists()
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "run" in proc.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "must look like package.module:attribute"),
        ("nowhere.near:server", "cannot import 'nowhere.near': no module named 'nowhere'"),
        ("cli_broken:server", "importing 'cli_broken' failed: RuntimeError: broken at import time"),
        ("cli_targets:missing", "'cli_targets' has no attribute 'missing'"),
        ("cli_targets:not_a_server", "'cli_targets:not_a_server' is an int, not a Server, a worker"),
        ("cli_targets:NeedsArgs", "calling 'cli_targets:NeedsArgs' failed (a worker class is called without"),
    ],
)
@pytest.mark.no_processes
def test_a_bad_target_exits_2_with_one_line(target: str, message: str) -> None:
    proc = spoc_workers("run", target)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"spoc-workers: error: {proc.stderr.split('error: ', 1)[1].strip()}"
    ]
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.no_processes
def test_debug_logging_shows_the_traceback() -> None:
    proc = spoc_workers("run", "--log-level", "debug", "cli_broken:server")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "broken at import time" in proc.stderr


@pytest.mark.no_processes
def test_the_version() -> None:
    from importlib.metadata import version

    proc = spoc_workers("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"spoc-workers {version('spoc-workers-core')}\n"
    assert (ROOT / "VERSION").read_text().strip() == version("spoc-workers-core")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("cli_broken:server", "importing 'cli_broken' failed: RuntimeError: broken at import time"),
        ("nowhere.near:server", "cannot import 'nowhere.near'"),
        ("cli_targets:NeedsArgs", "calling 'cli_targets:NeedsArgs' failed"),
    ],
)
@pytest.mark.no_processes
def test_an_import_error_says_how_to_see_the_traceback(target: str, message: str) -> None:
    proc = spoc_workers("run", target)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.rstrip().endswith("(add --traceback to see the full traceback)")
    assert "Traceback" not in proc.stderr


@pytest.mark.no_processes
def test_traceback_shows_the_full_traceback() -> None:
    proc = spoc_workers("run", "--traceback", "cli_broken:server")
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert 'cli_broken.py", line 3' in proc.stderr  # where the user's code raised
    last = proc.stderr.rstrip().splitlines()[-1]
    assert last == "spoc-workers: error: importing 'cli_broken' failed: RuntimeError: broken at import time"


@pytest.mark.no_processes
def test_no_traceback_hint_when_there_is_no_traceback_to_see() -> None:
    proc = spoc_workers("run", "cli_targets:missing")
    assert proc.returncode == 2
    assert "--traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("target", "hint"),
    [
        ("examples/supervised.py:server", "examples.supervised:server"),
        ("./examples/supervised.py:server", "examples.supervised:server"),
        (f"{ROOT}/examples/supervised.py:server", "examples.supervised:server"),
        ("examples/supervised:server", "examples.supervised:server"),
        ("examples.supervised.py:server", "examples.supervised:server"),
    ],
)
@pytest.mark.no_processes
def test_a_target_written_as_a_path_gets_a_hint(target: str, hint: str) -> None:
    proc = spoc_workers("run", "--check", target, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"spoc-workers: error: target {target!r} names a file; name its module with dots: {hint}\n"
    )
    assert spoc_workers("run", "--check", hint, cwd=ROOT).returncode == 0  # and the hint works


@pytest.mark.no_processes
def test_a_path_outside_the_current_directory_gets_the_general_hint(tmp_path: Path) -> None:
    proc = spoc_workers("run", f"{tmp_path}/service.py:server")
    assert proc.returncode == 2
    assert "names a file; name its module with dots (package.module:attribute)" in proc.stderr


@pytest.mark.no_processes
def test_a_worker_class_is_called_without_arguments() -> None:
    proc = spoc_workers("run", "--check", "cli_targets:Idle")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok: server 'Idle' with 1 worker(s): Idle (thread)"


@pytest.mark.no_processes
def test_check_calls_the_factory_but_starts_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spoc.workers", "run", "--check", "cli_targets:checked"],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CLI_TEST_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "factory called\n"
    assert proc.stdout.strip() == "ok: server 'checked' with 1 worker(s): marks (thread)"
    assert list(tmp_path.iterdir()) == []  # no setup() ran: nothing was started


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("cli_targets:worker", "ok: server 'lonely' with 1 worker(s): lonely (thread)"),
        ("cli_targets:make_server", "ok: server 'made' with 1 worker(s): made-idle (thread)"),
    ],
)
@pytest.mark.no_processes
def test_check_validates_without_starting(target: str, expected: str) -> None:
    proc = spoc_workers("run", "--check", target)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


def test_check_finds_what_cannot_be_pickled(start_method: str) -> None:
    proc = spoc_workers("run", "--check", "--start-method", start_method, "cli_targets:unpicklable")
    if start_method == "fork":
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2
        assert "'holds-lock'" in proc.stderr and "attribute 'lock'" in proc.stderr


def test_run_until_sigterm_exits_0(start_method: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spoc.workers",
            "run",
            "--start-method",
            start_method,
            "examples.supervised:server",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        # Wait until the flaky worker crashed, was restarted and runs again.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "'flaky' starting -> running" in line and any("restarts in" in seen for seen in lines):
                break
        assert any("restarts in" in seen for seen in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    output = "".join(lines) + out
    assert proc.returncode == 0, output
    assert "received SIGTERM" in output and "cruncher: " in output
