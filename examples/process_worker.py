"""ProcessWorkers for CPU-bound work: a small proof of work in two processes at once.

Each ``NonceFinder`` searches, for every word it was given, the smallest
number ``n`` such that ``sha256(f"{word}:{n}")`` starts with ``DIFFICULTY``
zero hex digits. That is pure CPU work, so it runs in child processes, side
by side, free of the GIL.

A process worker has its own memory: what the child computes does not appear
on the parent's worker object. Results come back over a
``multiprocessing.Queue`` made from the same start method as the workers
(``SPOC_WORKERS_START_METHOD`` when set, else Python's default).

The parent still sees how each child ended: ``state``, ``exitcode`` and, when
a hook raised, ``exception`` (the child's exception, pickled back, with the
child's traceback as its ``__cause__``). ``Faulty`` shows that.

Run it with ``python examples/process_worker.py``.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import queue
import sys
import time

from spoc.workers import START_METHOD_ENV, ProcessWorker, WorkerState

DIFFICULTY = 4  # leading zero hex digits: about 65,000 hashes per word


class NonceFinder(ProcessWorker):
    """Find a proof-of-work nonce for each word and put ``(word, nonce, digest, pid)`` on ``results``."""

    def __init__(self, name: str, words: list[str], results: multiprocessing.Queue) -> None:
        super().__init__(name)
        self.words = words
        self.results = results  # a multiprocessing queue travels to the child when it starts

    def main(self) -> None:
        prefix = "0" * DIFFICULTY
        for word in self.words:
            nonce = 0
            while self.is_running:  # checked between hashes: a stop request is honoured quickly
                digest = hashlib.sha256(f"{word}:{nonce}".encode()).hexdigest()
                if digest.startswith(prefix):
                    self.results.put((word, nonce, digest, os.getpid()))
                    break
                nonce += 1
        # main() returns: the worker ends by itself, cleanly


class Faulty(ProcessWorker):
    """A worker whose main() fails: the error reaches the parent."""

    def main(self) -> None:
        raise ValueError("corrupt input in block 7")


def main() -> int:
    """Run two NonceFinders in parallel, then a Faulty worker."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)-7s %(name)s: %(message)s")
    start_method = os.environ.get(START_METHOD_ENV) or multiprocessing.get_start_method()
    print(f"start method: {start_method}, parent pid: {os.getpid()}")
    results: multiprocessing.Queue = multiprocessing.get_context(start_method).Queue()

    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    finders = [NonceFinder("finder-1", words[0::2], results), NonceFinder("finder-2", words[1::2], results)]
    began = time.monotonic()
    for finder in finders:
        finder.start()
    print(f"started {[f'{f.name} (pid {f.pid})' for f in finders]}")

    found = {}
    try:
        while len(found) < len(words):  # read the results before joining: the children wait for it
            word, nonce, digest, pid = results.get(timeout=60)
            found[word] = nonce
            print(f"  {word:8} nonce {nonce:>7}  sha256 {digest[:12]}...  (found by pid {pid})")
    except queue.Empty:
        print("timed out waiting for results", file=sys.stderr)
    for finder in finders:
        finder.stop()  # a no-op for a worker that already ended
        finder.join(timeout=30)
        print(f"{finder.name}: state {finder.state}, exitcode {finder.exitcode}")
    print(f"{len(found)} proofs of work in {time.monotonic() - began:.2f}s")
    results.close()
    results.join_thread()

    print("starting a worker whose main() raises (the child logs the error to stderr)")
    faulty = Faulty("faulty")
    faulty.start()
    faulty.join(timeout=30)
    error = faulty.exception
    print(f"{faulty.name}: state {faulty.state}, exitcode {faulty.exitcode}")
    print(f"{faulty.name}: worker.exception is {error!r}")
    if error is not None and error.__cause__ is not None:
        last_line = str(error.__cause__).strip().splitlines()[-1]
        print(f"{faulty.name}: the child's traceback ends with: {last_line}")

    ok = (
        len(found) == len(words)
        and all(f.state is WorkerState.STOPPED and f.exitcode == 0 for f in finders)
        and faulty.state is WorkerState.FAILED
        and faulty.exitcode == 1
        and isinstance(error, ValueError)
    )
    if ok:
        print("process_worker.py: done")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
