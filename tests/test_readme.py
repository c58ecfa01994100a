"""The READMEs' Python snippets run as written, each after the ones before it, in one namespace.

README.md first, then each distribution's own README (its long description).

``tests/support/run_docs_blocks.py`` runs them in a subprocess, in page order: the
first one's server runs until a SIGTERM (README says Ctrl+C or SIGTERM ends
it cleanly, with exit status 0), and the Redis snippet runs against the
suite's own ``redis-server``, its ``redis://localhost:6379/0`` pointed there.
Without ``redis-server`` the other snippets still run and the test is then
skipped, saying why, as the Redis tests are (it fails instead when
``SPOC_WORKERS_REQUIRE_REDIS=1``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from docs_blocks import python_blocks
from guide_workers import ScriptRun
from marks import process_free
from spoc.workers.redis import local_redis_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUNNER = ROOT / "tests" / "support" / "run_docs_blocks.py"
TIMEOUT = 90.0
LOCAL_URL = "redis://localhost:6379/0"


PACKAGE_READMES = sorted((ROOT / "packages").glob("*/README.md"))


def run_blocks(tmp_path: Path, *args: str, page: Path = README) -> tuple[ScriptRun, str]:
    """Run a README's blocks with the runner; return the finished run and its stdout."""
    with ScriptRun([str(RUNNER), str(page), *args], cwd=ROOT, stderr_path=tmp_path / "stderr.txt") as run:
        output = run.finish(timeout=TIMEOUT)
    return run, output


def skip_without_redis() -> None:
    """Skip (or, when Redis tests are required, fail) without redis-server."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def test_readme_snippets_run_in_order(tmp_path: Path) -> None:
    blocks = [block for block in python_blocks(README) if not block.fragment]
    needs_redis = [block.number for block in blocks if "redis" in block.options]
    assert needs_redis, "README's Redis snippet should be marked <!-- docs-test: redis -->"
    have_redis = shutil.which("redis-server") is not None
    if have_redis:
        with local_redis_server() as url:
            run, output = run_blocks(tmp_path, "--replace", f"{LOCAL_URL}={url}")
        chosen = blocks
    else:
        # Without a server, the snippets up to the first Redis one (the later ones may use it).
        chosen = blocks[: blocks.index(next(b for b in blocks if "redis" in b.options))]
        numbers = ",".join(str(block.number) for block in chosen)
        run, output = run_blocks(tmp_path, "--blocks", numbers)
    assert run.returncode == 0, run.describe()
    for block in chosen:
        assert f"block {block.number} ({block.label}) ended with status 0" in output, run.describe()
    assert "Poller: polled" in output  # the first server stopped cleanly: teardown() ran
    if not have_redis:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("SPOC_WORKERS_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(f"README's Redis snippet not run: {message}")


# What the supervision snippet promises of its Cruncher: with a heartbeat_timeout it is not
# taken for hung. Before the fix Cruncher never showed a sign of life and, with
# heartbeat_timeout=30, was killed and restarted every 30 s; here the limit is 1 s, watched for 3 s.
HEARTBEAT_CHECK = """
import time as check_time

events = []
check = Server("check", on_event=events.append)
check.add_worker(Cruncher(), restart="always", heartbeat_timeout=1.0)
check.start()
check_time.sleep(3.0)  # three times the limit: long enough to be declared hung thrice
check.stop()
assert check.join_all(10.0) == []
hung = [event.message for event in events if event.kind == "hung"]
assert not hung, hung
assert check.status()[0]["restarts"] == 0
"""


def test_readme_cruncher_is_not_declared_hung(tmp_path: Path) -> None:
    first = python_blocks(README)[0]
    assert "class Cruncher(ProcessWorker)" in first.code
    run, output = run_blocks(tmp_path, "--blocks", str(first.number), "--then", HEARTBEAT_CHECK)
    assert run.returncode == 0, run.describe()
    assert "--then ended with status 0" in output, run.describe()


@pytest.mark.no_processes
def test_every_distribution_has_a_real_readme() -> None:
    assert [path.parent.name for path in PACKAGE_READMES] == [
        "spoc-workers-async",
        "spoc-workers-core",
        "spoc-workers-patterns",
        "spoc-workers-redis",
    ]
    for path in PACKAGE_READMES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {path.parent.name}\n"), path
        for section in ("## Install", "## Example", "## Documentation"):
            assert section in text, (path, section)
        assert len(python_blocks(path)) == 1, path  # one example, which the test below runs


@pytest.mark.parametrize(
    "readme", [process_free(p, python_blocks(p)[0].code, p.parent.name) for p in PACKAGE_READMES]
)
def test_distribution_readme_example_runs(readme: Path, tmp_path: Path) -> None:
    (block,) = python_blocks(readme)
    if "redis" in block.options:
        skip_without_redis()
        with local_redis_server() as url:
            run, output = run_blocks(tmp_path, "--replace", f"{LOCAL_URL}={url}", page=readme)
    else:
        run, output = run_blocks(tmp_path, page=readme)
    assert run.returncode == 0, run.describe()
    assert "ended with status 0" in output, run.describe()
    assert "Traceback" not in run.stderr, run.describe()
