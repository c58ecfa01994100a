"""``nox -s version`` (tools/version.py): show and bump VERSION with nothing but nox installed.

Every test works on a copy of VERSION; the real file is checked to be untouched.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "version.py"
NOXFILE = ROOT / "noxfile.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("version_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load()


@pytest.fixture(autouse=True)
def real_version_untouched() -> Iterator[None]:
    before = (ROOT / "VERSION").read_text()
    yield
    assert (ROOT / "VERSION").read_text() == before


@pytest.fixture
def version_file(tmp_path: Path) -> Path:
    copy = tmp_path / "VERSION"
    copy.write_text("0.1.0\n")
    return copy


def _run(version_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args, "--file", str(version_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.no_processes
def test_the_real_version_file_holds_a_valid_version() -> None:
    assert tool.read(ROOT / "VERSION") == (ROOT / "VERSION").read_text().strip()


@pytest.mark.no_processes
def test_no_argument_shows_the_version(version_file: Path) -> None:
    proc = _run(version_file)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "0.1.0\n", "")
    assert version_file.read_text() == "0.1.0\n"


@pytest.mark.parametrize(
    ("bump", "new"),
    [("patch", "0.1.1"), ("minor", "0.2.0"), ("major", "1.0.0"), ("0.1.1rc1", "0.1.1rc1"), ("2.0", "2.0")],
)
@pytest.mark.no_processes
def test_a_bump_rewrites_the_file(version_file: Path, bump: str, new: str) -> None:
    proc = _run(version_file, bump)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"Old: 0.1.0\nNew: {new}\n"
    assert version_file.read_text() == f"{new}\n"


@pytest.mark.parametrize(
    ("current", "bump", "new"),
    [
        ("1.2", "patch", "1.2.1"),
        ("1.2.3rc1", "patch", "1.2.4"),
        ("1.2.3.dev4", "minor", "1.3.0"),
        ("1.2.3", "minor", "1.3.0"),
        ("1.2.3", "1.2.3.post1", "1.2.3.post1"),
        ("1.2.3rc1", "1.2.3", "1.2.3"),
    ],
)
@pytest.mark.no_processes
def test_bump_rules(current: str, bump: str, new: str) -> None:
    assert tool.bumped(current, bump) == new


@pytest.mark.parametrize(
    ("bump", "message"),
    [
        ("banana", "'banana' is not a version"),
        ("0.1.0", "version 0.1.0 is not higher than the current version 0.1.0"),
        ("0.0.9", "not higher"),
        ("0.1.0rc1", "not higher"),
    ],
)
@pytest.mark.no_processes
def test_a_bad_bump_is_refused_and_changes_nothing(version_file: Path, bump: str, message: str) -> None:
    proc = _run(version_file, bump)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.startswith("version: error: ")
    assert version_file.read_text() == "0.1.0\n"


@pytest.mark.no_processes
def test_a_broken_version_file_is_reported(version_file: Path) -> None:
    version_file.write_text("0.1.0 0.2.0\n")
    proc = _run(version_file)
    assert proc.returncode == 2
    assert "expected one version on one line" in proc.stderr


@pytest.mark.no_processes
def test_the_nox_session_runs_this_tool_and_not_hatch() -> None:
    source = NOXFILE.read_text()
    session = source[source.index("def version(") :]
    assert '"tools" / "version.py"' in session
    assert "hatch" not in session
