"""Every script in ``examples/`` runs to its end successfully, under this run's start method.

Each example ends by itself and, when everything it shows went as it says,
prints ``done`` (or ``<script name>: done``) as its last line. ``examples/server.py`` is
also run until a signal: it must stop its workers gracefully and exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from guide_workers import ScriptRun
from marks import process_free

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT = 60.0  # each example needs a few seconds; this is for a very slow machine


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "demo.py",
        "thread_worker.py",
        "process_worker.py",
        "async_worker.py",
        "server.py",
        "job_processor.py",
        "workers.py",  # the Workers guide's "Next steps" names it
    }


NEEDS_REDIS = {"redis_scale_out.py", "redis_pipeline.py"}


@pytest.mark.parametrize("example", [process_free(p, p.read_text(), p.name) for p in EXAMPLES])
def test_example_ends_by_itself(example: Path, tmp_path: Path) -> None:
    if example.name in NEEDS_REDIS and not shutil.which("redis-server"):
        if os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1":
            pytest.fail(f"{example.name} needs redis-server, which is not installed")
        pytest.skip(f"{example.name} needs redis-server (Debian: apt-get install redis-server)")
    with ScriptRun([str(example)], cwd=ROOT, stderr_path=tmp_path / "stderr.txt") as script:
        output = script.finish(timeout=TIMEOUT)
    assert script.returncode == 0, script.describe()
    assert output.splitlines()[-1] in ("done", f"{example.name}: done"), script.describe()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_example_stops_gracefully_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    with ScriptRun(
        [str(ROOT / "examples" / "server.py"), "--seconds", "120"],
        cwd=ROOT,
        stderr_path=tmp_path / "stderr.txt",
    ) as script:
        script.read_until("server.py: workers running")
        signalled = time.monotonic()
        script.proc.send_signal(signum)
        output = script.finish(timeout=TIMEOUT)
        took = time.monotonic() - signalled
    assert script.returncode == 0, script.describe()
    teardowns = re.findall(r"^teardown: (\w+)", output, re.MULTILINE)
    assert sorted(teardowns) == ["cruncher", "heartbeat", "poller", "timer"], script.describe()
    assert "are up" not in output  # the signal stopped it, not the timer
    assert f"received {signum.name}" in script.stderr, script.describe()
    assert output.splitlines()[-1] == "server.py: done", script.describe()
    assert took < 30.0  # the workers stop within milliseconds; the server waits 10 s at most
