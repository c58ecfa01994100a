"""A pipeline's own thread hops: the one reader takes several items at once, and loses none.

The reader of a :class:`Hop` read by one stage worker takes what is there in
one hold of the lock. What it took is still counted in the hop's size (so
the hop never holds more than ``maxsize``), is invisible to any other get
(the pipeline's own emptying after a failure), and goes back to the front of
the hop, in order, when the worker's loop ends before handing it out.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from spoc.workers import WorkerState
from spoc.workers.patterns import StageWorker
from spoc.workers.patterns._hops import TAKE_AT_ONCE, Hop
from targets import started, wait_for

pytestmark = pytest.mark.no_processes


class _HeldAtFirst(StageWorker):
    """Doubles items; its first item waits for ``go``, so the rest stay taken meanwhile."""

    def __init__(self, input_queue: Any, output_queue: Any) -> None:
        super().__init__("held", input_queue, output_queue)
        self.first, self.go = threading.Event(), threading.Event()

    def process_item(self, item: int) -> int:
        if not self.first.is_set():
            self.first.set()
            assert self.go.wait(10)
        return item * 2


def test_what_the_reader_took_goes_back_in_order_when_it_stops() -> None:
    hop, out = Hop(0), Hop(0)
    for item in range(10):
        hop.put(item)
    worker = _HeldAtFirst(hop, out)
    with started(worker):
        assert worker.first.wait(10)
        # Item 0 is in hand; the other nine were taken with it.
        assert (list(hop.queue), hop.held, hop.qsize()) == ([], 9, 9)
        with pytest.raises(queue.Empty):  # what the reader holds is not anybody else's to take
            hop.get_nowait()
        worker.stop()
        worker.go.set()
        assert worker.join(10)
    assert worker.state is WorkerState.STOPPED
    assert list(out.queue) == [0]  # the item in hand was finished and passed on
    assert (list(hop.queue), hop.held) == (list(range(1, 10)), 0)  # the rest is back, in order


def test_a_bounded_hop_never_holds_more_than_maxsize_with_what_is_taken() -> None:
    hop, out = Hop(8), Hop(0)
    for item in range(8):
        hop.put(item)
    worker = _HeldAtFirst(hop, out)
    with started(worker):
        assert worker.first.wait(10)
        # Half of maxsize at most is taken at once: item 0 in hand, 1-3 taken, 4-7 still queued.
        assert (list(hop.queue), hop.held) == ([4, 5, 6, 7], 3)
        hop.put(8)  # the one free place: the item in hand's
        assert hop.full()
        with pytest.raises(queue.Full):
            hop.put_nowait(9)
        worker.go.set()
        assert wait_for(lambda: out.qsize() == 9)
    assert sorted(out.queue) == [2 * item for item in range(9)]


def test_a_hop_with_several_readers_is_read_one_item_at_a_time() -> None:
    hop, out = Hop(0, readers=2), Hop(0)
    for item in range(TAKE_AT_ONCE):
        hop.put(item)
    worker = _HeldAtFirst(hop, out)
    with started(worker):
        assert worker.first.wait(10)
        assert (hop.qsize(), hop.held) == (TAKE_AT_ONCE - 1, 0)  # left for the other reader
        worker.go.set()
        assert wait_for(lambda: out.qsize() == TAKE_AT_ONCE)
