"""Run the Python blocks of a Markdown page in order, in one namespace, as one script would.

    python tests/support/run_docs_blocks.py PAGE.md [--blocks 2,5] [--replace OLD=NEW ...] [--then CODE]

Each block is compiled with the page's name and line numbers (a traceback
points into the page) and executed in this module's own namespace, with
``__name__ == "__main__"``, so that everything a block defines is there for
the blocks after it, and classes pickle by reference as they do in a
script. This module keeps its own names out of that namespace (they all
start with ``_``), so a block that forgets an import fails here too.

* ``--blocks``: the blocks to run, by number (1-based among the page's
  Python blocks); default: every block. Fragments (see ``docs_blocks``) are
  only compiled.
* ``--replace OLD=NEW``: replace a string in every block first (the tests
  point ``redis://localhost:6379/0`` at their own server).
* ``--then CODE``: run ``CODE`` after the blocks, in the same namespace (a
  test's extra check on what the blocks defined).

A ``SystemExit`` raised by a block ends that block only; its status must be
what the block's ``docs-test`` comment expects (0 by default). A block marked
``sigterm`` gets SIGTERM once every worker of a ``Server`` it made is
running. Before and after each block a line ``docs-test: block N ...`` is
printed. The exit status is 0 when every block ended as expected, else 1.

Process workers: under ``spawn`` and ``forkserver`` a child imports this
file again as ``__mp_main__``, with this process's ``sys.argv``. It then runs
the same blocks up to the one that started it, with ``__name__ ==
"__mp_main__"``, so the child has the blocks' classes exactly as the child of
a script has its script's. (The fork server is told not to preload this
module, so that each child does this with the arguments of its own start.)
"""

import argparse as _argparse
import multiprocessing as _multiprocessing
import os as _os
import signal as _signal
import sys as _sys
import threading as _threading
import time as _time
import traceback as _traceback
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parent))

import docs_blocks as _docs_blocks

_SIGNAL_AFTER = 30.0  # a sigterm block whose workers never all run still gets its signal


def _parse(argv):
    parser = _argparse.ArgumentParser(description="Run the Python blocks of a Markdown page.")
    parser.add_argument("page")
    parser.add_argument("--blocks", default="", help="comma-separated block numbers (default: all)")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=NEW")
    parser.add_argument("--then", default="", metavar="CODE")
    parser.add_argument("--running", default="", help=_argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(args):
    blocks = _docs_blocks.python_blocks(args.page)
    if not args.blocks:
        return blocks
    numbers = [int(n) for n in args.blocks.split(",")]
    by_number = {block.number: block for block in blocks}
    missing = [n for n in numbers if n not in by_number]
    if missing:
        raise SystemExit(f"{args.page} has no python block(s) {missing}; it has {len(blocks)}")
    return [by_number[n] for n in numbers]


def _compiled(block, replacements):
    code = block.code
    for pair in replacements:
        old, _, new = pair.partition("=")
        code = code.replace(old, new)
    # Blank lines first, so that line numbers are the page's.
    return compile("\n" * (block.line - 1) + code, str(block.path), "exec", dont_inherit=True)


def _status_of(exit_request):
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=_sys.stderr)
    return 1


def _run(code):
    """Execute ``code`` here; return its exit status (1 and a traceback when it raised)."""
    try:
        exec(code, globals())
    except SystemExit as exit_request:
        return _status_of(exit_request)
    except BaseException:
        _traceback.print_exc()
        return 1
    return 0


def _signal_when_running(finished):
    """Send SIGTERM to this process once every worker of one of the namespace's servers runs."""
    from spoc.workers import Server, WorkerState

    deadline = _time.monotonic() + _SIGNAL_AFTER
    while not finished.wait(0.01) and _time.monotonic() < deadline:
        servers = [value for value in list(globals().values()) if isinstance(value, Server)]
        if any(s.workers and all(w.state is WorkerState.RUNNING for w in s.workers) for s in servers):
            break
    if not finished.is_set():
        _os.kill(_os.getpid(), _signal.SIGTERM)


def _main():
    argv = _sys.argv[:]
    args = _parse(argv[1:])
    blocks = _selected(args)
    _multiprocessing.set_forkserver_preload([])
    for block in blocks:
        code = _compiled(block, args.replace)
        if block.fragment:
            continue  # compiled: valid Python is all a fragment promises
        _sys.argv = [*argv, "--running", str(block.number)]
        print(f"docs-test: block {block.number} ({block.label}) starts", flush=True)
        finished = _threading.Event()
        if "sigterm" in block.options:
            _threading.Thread(target=_signal_when_running, args=(finished,), daemon=True).start()
        try:
            status = _run(code)
        finally:
            finished.set()
        print(f"docs-test: block {block.number} ({block.label}) ended with status {status}", flush=True)
        if status != block.expected_status:
            print(
                f"docs-test: block {block.number} ({block.label}) ended with status {status}, "
                f"expected {block.expected_status}",
                file=_sys.stderr,
            )
            return 1
    if args.then:
        _sys.argv = [*argv, "--running", "then"]
        status = _run(compile(args.then, "<--then>", "exec", dont_inherit=True))
        print(f"docs-test: --then ended with status {status}", flush=True)
        if status != 0:
            return 1
    return 0


def _define_for_child():
    """In a spawn/forkserver child: run the blocks up to the one that started it, as its script would."""
    args = _parse(_sys.argv[1:])
    blocks = _selected(args)
    for block in blocks:
        if not block.fragment:
            exec(_compiled(block, args.replace), globals())
        if args.running not in ("", "then") and block.number == int(args.running):
            break


if __name__ == "__main__":
    raise SystemExit(_main())
if __name__ == "__mp_main__":
    _define_for_child()
