"""The suite's stand-in for ``sys.stdout`` keeps each thread's lines whole."""

from __future__ import annotations

import threading

import pytest

from guide_workers import RecordingStream

pytestmark = pytest.mark.no_processes


def test_lines_printed_by_two_threads_at_once_do_not_mix() -> None:
    stream = RecordingStream()
    turns = [threading.Event() for _ in range(4)]

    def printer(text: str, first_turn: int) -> None:
        # print() writes the text, then the newline: the two threads' halves alternate.
        for turn, part in ((first_turn, text), (first_turn + 2, "\n")):
            assert turns[turn].wait(10.0)
            stream.write(part)
            if turn + 1 < len(turns):
                turns[turn + 1].set()

    threads = [
        threading.Thread(target=printer, args=("Worker-1 processing: Job-0", 0)),
        threading.Thread(target=printer, args=("Worker-2 processing: Job-1", 1)),
    ]
    for thread in threads:
        thread.start()
    turns[0].set()
    for thread in threads:
        thread.join(10.0)
    assert stream.lines() == ["Worker-1 processing: Job-0", "Worker-2 processing: Job-1"]
