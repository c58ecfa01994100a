"""Marks for tests that run scripts in a subprocess: which of them start no process.

A test marked ``no_processes`` runs under the primary start method only (see
``conftest.py``). For a test that runs a script (an example, a docs block),
whether it starts a process is read from the script's source here; while the
test runs, ``process_free_site``'s ``sitecustomize`` makes any process start in
its subprocesses raise, so a wrong mark fails loudly instead of skipping the
start methods the script needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

PROCESS_FREE_SITE = Path(__file__).resolve().parent / "process_free_site"
"""Put first on ``PYTHONPATH`` for the subprocesses of a ``no_processes`` test."""


_STARTS_PROCESSES = re.compile(
    r"""\bProcess[A-Z]\w*|\bProcess\(|multiprocessing|concurrent\.futures|kind\s*=\s*["']process["']"""
)
"""What code that may start a process names: a process worker or stage class (``ProcessWorker``,
``ProcessJobProcessor``, ...), ``Process(``, ``multiprocessing``, a ``kind="process"`` stage."""


def uses_processes(code: str) -> bool:
    """Whether a script's source may start a process; errs on the side of yes.

    "Process jobs" in a docstring is no process; a wrong answer the other way
    fails loudly (see the module docstring).
    """
    return _STARTS_PROCESSES.search(code) is not None


def process_free(value: Any, code: str, id: str | None = None) -> Any:
    """``value`` as a test parameter, marked ``no_processes`` when ``code`` starts no process."""
    marks = [] if uses_processes(code) else [pytest.mark.no_processes]
    return pytest.param(value, marks=marks, id=id)
