"""Run every ``examples/*.py``; each must end by itself, successfully, within a time limit.

Used by the nox ``examples`` session::

    python tests/support/run_examples.py                 # all examples
    python tests/support/run_examples.py demo server     # only these (with or without .py)

Each example runs from the repository root with this interpreter, in a
process group of its own, so that on a timeout the example and any worker
processes it started are killed together. One line per example gives its
result and duration; a failed or timed-out example's output follows its
line. The exit status is 1 when any example failed, else 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 60.0


def find_examples(names: list[str]) -> list[Path]:
    """The example scripts to run: all of them, or those named."""
    every = sorted(EXAMPLES.glob("*.py"))
    if not names:
        return every
    chosen = []
    for name in names:
        path = EXAMPLES / (name if name.endswith(".py") else f"{name}.py")
        if path not in every:
            raise SystemExit(f"no example {name!r}; examples: {', '.join(p.stem for p in every)}")
        chosen.append(path)
    return chosen


def run_example(path: Path, timeout: float) -> tuple[str, float, str]:
    """Run one example; return ``(result, seconds, output)``.

    ``result`` is ``"ok"``, ``"failed (exit status N)"`` or ``"timed out"``.
    """
    began = time.monotonic()
    with subprocess.Popen(
        [sys.executable, str(path)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout kills its workers too
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            output, _ = proc.communicate()
            result = "timed out"
        else:
            result = "ok" if proc.returncode == 0 else f"failed (exit status {proc.returncode})"
    return result, time.monotonic() - began, output.decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    """Run the examples and report; return the exit status."""
    parser = argparse.ArgumentParser(description="Run the example scripts.")
    parser.add_argument("names", nargs="*", help="examples to run (default: all)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per example (default 60)")
    args = parser.parse_args(argv)

    examples = find_examples(args.names)
    if not examples:
        print(f"no examples found in {EXAMPLES}")
        return 1
    width = max(len(str(path.relative_to(ROOT))) for path in examples)
    failed = []
    for path in examples:
        result, seconds, output = run_example(path, args.timeout)
        print(f"{path.relative_to(ROOT)!s:{width}}  {result:26} {seconds:6.2f}s", flush=True)
        if result != "ok":
            failed.append(path.name)
            print(f"--- output of {path.name} ---\n{output.rstrip()}\n--- end of {path.name} ---", flush=True)
    print(f"{len(examples) - len(failed)} of {len(examples)} examples ended successfully")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
