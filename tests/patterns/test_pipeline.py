"""Pipeline, StageWorker and ProcessStageWorker: right queues, back-pressure, end of stream, conservation.

Process stages are classes and functions of ``patterns_targets`` (importable
by spawn and forkserver children). Conservation is checked through the
pipeline's counters *and* against what the test itself fed and received:
every accepted item is emitted, dropped on purpose, or a dead letter.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import threading
import time
from typing import Any

import pytest

import patterns_targets as pt
from patterns_targets import check_conservation
from spoc.workers import Server, WorkerState
from spoc.workers.patterns import (
    END_OF_STREAM,
    DeadLetter,
    Pipeline,
    PipelineFailedError,
    PipelineStoppedError,
    ProcessStageWorker,
    StageWorker,
)
from spoc.workers.patterns._queues import is_process_queue

JOIN = 20.0


def test_thread_process_thread_10000_items_each_exactly_once_within_the_bounds(start_method: str) -> None:
    """10,000 items through thread -> process -> thread with queues of 8.

    Every item arrives exactly once; the items in flight never exceed the
    queues' capacity (the results queue included) plus one per worker.
    """
    pipeline = Pipeline("big", maxsize=8)
    pipeline.add_stage(pt.increment).add_stage(pt.Square).add_stage(pt.tag)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10_000))
        results = list(pipeline.results())
    assert sorted(results) == sorted(("r", (i + 1) ** 2) for i in range(10_000))
    stats = pipeline.stats
    assert (stats.accepted, stats.emitted, stats.failed) == (10_000, 10_000, 0)
    assert [s.items_in for s in stats.stages] == [10_000] * 3
    assert [s.kind for s in stats.stages] == ["thread", "process", "thread"]
    bound = 4 * 8 + 3  # four bounded queues (in front of each stage, and the results) + one item per worker
    assert 0 < stats.peak_in_flight <= bound, stats.peak_in_flight
    check_conservation(pipeline)


def test_the_builder_picks_the_queue_type_of_each_hop() -> None:
    """Thread stages read and write queues of this process; a process stage's workers get
    private pipes of their own (no lock shared between processes), never a shared queue."""
    pipeline = Pipeline("hops", maxsize=3)
    pipeline.add_stage(pt.increment).add_stage(pt.increment).add_stage(pt.Square).add_stage(pt.tag)
    pipeline.start()
    try:
        stages: list[Any] = list(pipeline.workers)
        queues = [w.input_queue for w in stages] + [stages[-1].output_queue]
        in_process = [isinstance(q, queue.Queue) for q in queues]
        assert in_process[0] and in_process[1] and in_process[3]  # thread ends
        assert in_process[4]  # thread -> results
        around = (stages[2].input_queue, stages[2].output_queue)
        assert [type(q).__name__ for q in around] == ["Channel", "Channel"]
        assert not any(is_process_queue(q) for q in around)
        capacities = [q.maxsize for q in queues if isinstance(q, queue.Queue)]
        assert capacities == [3] * 4
        pipeline.close()
        assert list(pipeline.results()) == []
    finally:
        pipeline.stop()


@pytest.mark.parametrize(("batch", "squares"), [(1, 1), (32, 2)], ids=["item-by-item", "batched"])
def test_stop_in_the_middle_drains_every_accepted_item(start_method: str, batch: int, squares: int) -> None:
    """Stop after 2,000 results: feeding stops, what was accepted drains; none failed, none lost.

    Batched too (``Pipeline(batch=32)``, two process workers): no item stays in a batch.
    """
    pipeline = Pipeline("mid", maxsize=8, batch=batch)
    pipeline.add_stage(pt.increment).add_stage(pt.Square, workers=squares).add_stage(pt.tag)
    results: list[Any] = []
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10_000))
        for result in pipeline.results():
            results.append(result)
            if len(results) == 2_000:
                assert pipeline.stop(timeout=JOIN)  # drained without forcing
    stats = pipeline.stats
    assert 2_000 <= stats.accepted < 10_000
    assert stats.failed == 0 and pipeline.dead_letters == []
    assert stats.accepted == stats.emitted == len(results)
    assert sorted(results) == sorted(("r", (i + 1) ** 2) for i in range(stats.accepted))
    check_conservation(pipeline)
    for stage in stats.stages:  # each item a stage took in was passed on
        assert stage.items_in == stage.items_out + stage.failed + stage.dropped, stage
    with pytest.raises(RuntimeError):
        pipeline.put(1)


def test_items_that_raise_become_dead_letters_and_the_rest_flow_on(start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    events = context.Queue()
    pipeline = Pipeline("raising", maxsize=4)
    pipeline.add_stage(pt.EventRecordingStage, workers=2, events=events).add_stage(
        pt.fail_on_sevens, name="again"
    )
    try:
        with pipeline:
            pipeline.start()
            pipeline.feed(range(1, 101))
            results = list(pipeline.results())
        received = pt.events_until_shutdown(events, workers=2)
    finally:
        pt.close_queue(events)
    assert sorted(results) == [i for i in range(1, 101) if i % 7]
    letters = pipeline.dead_letters
    assert sorted(letter.item for letter in letters) == list(range(7, 101, 7))
    assert all(isinstance(letter.error, ValueError) for letter in letters)
    assert {letter.stage for letter in letters} == {"EventRecordingStage"}
    assert all(
        letter.worker and letter.worker.startswith("raising.EventRecordingStage-") for letter in letters
    )
    errors = sorted((e[3], e[1]) for e in received if e[0] == "error")
    assert errors == [(i, "process_item") for i in range(7, 101, 7)]
    check_conservation(pipeline)


def test_a_thread_stage_error_event_carries_the_item() -> None:
    events: list[dict[str, Any]] = []

    class Strict(StageWorker):
        def process_item(self, item: int) -> int:
            if item == 3:
                raise KeyError(item)
            return item

        def lifecycle(self, event_type: str, **data: Any) -> None:
            if event_type == "error":
                events.append(data)

    pipeline = Pipeline("strict")
    pipeline.add_stage(Strict)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(6))
        assert sorted(pipeline.results()) == [0, 1, 2, 4, 5]
    assert [(e["item"], e["phase"], type(e["exception"])) for e in events] == [(3, "process_item", KeyError)]
    assert [(d.stage, d.item) for d in pipeline.dead_letters] == [("Strict", 3)]
    check_conservation(pipeline)


def test_many_workers_per_stage_end_by_themselves(start_method: str) -> None:
    """End-of-stream markers are counted across 3 -> 2 -> 2 workers; join() returns on its own."""
    pipeline = Pipeline("wide", maxsize=2)
    pipeline.add_stage(pt.increment, workers=3)
    pipeline.add_stage(pt.square, kind="process", workers=2)
    pipeline.add_stage(pt.drop_odd, workers=2)
    pipeline.start()
    try:
        for i in range(120):
            pipeline.put(i)  # one thread puts everything; results wait in the buffer
        pipeline.close()
        assert pipeline.join(JOIN)
        results = list(pipeline.results())
    finally:
        pipeline.stop()
    assert sorted(results) == sorted(x for x in ((i + 1) ** 2 for i in range(120)) if x % 2 == 0)
    stats = pipeline.stats
    assert stats.dropped == 60 and stats.emitted == 60
    assert all(w.state is WorkerState.STOPPED for w in pipeline.workers)
    check_conservation(pipeline)


def test_async_stages_thread_and_process(start_method: str) -> None:
    pipeline = Pipeline("async", maxsize=4)
    pipeline.add_stage(pt.async_negate).add_stage(pt.AsyncSquare, workers=2).add_stage(pt.async_negate)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(100))
        results = list(pipeline.results())
    assert sorted(results) == sorted(-(i * i) for i in range(100))
    check_conservation(pipeline)


def test_a_result_that_cannot_cross_to_a_process_is_a_dead_letter(start_method: str) -> None:
    pipeline = Pipeline("pickles")
    pipeline.add_stage(pt.unpicklable_on_five).add_stage(pt.Square)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10))
        results = list(pipeline.results())
    assert sorted(results) == [i * i for i in range(10) if i != 5]
    [letter] = pipeline.dead_letters
    assert letter.item == 5 and isinstance(letter.error, TypeError)
    assert "cannot be pickled" in str(letter.error)
    check_conservation(pipeline)


def test_past_its_budget_stop_turns_queued_items_into_dead_letters(start_method: str) -> None:
    """A stage that takes 0.3 s per item cannot drain 20 items in a 0.4 s budget.

    Then the workers are stopped (each finishes its item and passes it on),
    and every item still queued becomes a dead letter: nothing is lost.
    """
    pipeline = Pipeline("budget", maxsize=8)
    pipeline.add_stage(pt.SlowStage, delay=0.3).add_stage(pt.increment)
    pipeline.start()
    try:
        for i in range(8):
            pipeline.put(i)
        assert not pipeline.stop(timeout=0.4)
        results = list(pipeline.results())
    finally:
        pipeline.stop()
    stats = pipeline.stats
    letters = pipeline.dead_letters
    assert stats.failed == len(letters) > 0
    assert all(isinstance(d.error, PipelineStoppedError) for d in letters)
    # Queued for SlowStage (an input), or for increment (SlowStage's output, the same value):
    # either way the item would have come out as item + 1.
    assert sorted(results + [d.item + 1 for d in letters]) == list(range(1, 9))
    check_conservation(pipeline)


def test_a_failed_stage_worker_stops_the_pipeline_without_losing_items(start_method: str) -> None:
    pipeline = Pipeline("broken", maxsize=4)
    pipeline.add_stage(pt.increment).add_stage(pt.FailingSetup)
    pipeline.start()
    try:
        accepted = 0
        with pytest.raises(RuntimeError, match="failed"):
            for i in range(100):
                pipeline.put(i, timeout=JOIN)
                accepted += 1
        assert pipeline.join(JOIN)
    finally:
        pipeline.stop()
    stats = pipeline.stats
    assert stats.failed_workers == ("broken.FailingSetup",)
    assert stats.emitted == 0 and stats.accepted == accepted == stats.failed
    # Items queued for increment kept their value; those past it (queued for, or not passed on
    # to, FailingSetup) are one more: every accepted item is there exactly once.
    originals = sorted(d.item - (1 if d.stage == "FailingSetup" else 0) for d in pipeline.dead_letters)
    assert originals == list(range(accepted))
    check_conservation(pipeline)


def test_close_after_a_stage_failed_raises_the_failure(start_method: str) -> None:
    """The end marker cannot go in once a stage failed: close() says why, every time.

    Before, it put the marker into the (emptied) first queue and returned
    quietly, or, had that queue been a multiprocessing one, raised ValueError.
    """
    pipeline = Pipeline("close-after-failure", maxsize=4)
    pipeline.add_stage(pt.increment).add_stage(pt.FailingSetup)
    pipeline.start()
    try:
        assert pipeline.join(JOIN)  # the failure stopped it
        for _ in range(2):
            with pytest.raises(PipelineFailedError, match="stage 'FailingSetup'"):
                pipeline.close()
    finally:
        pipeline.stop()
    assert pipeline.stats.failed_workers == ("close-after-failure.FailingSetup",)


PROMPT = 5.0  # seconds from a stage's failure to a waiter's return: a wide bound (measured: < 0.05 s)

FAILURES = [
    pytest.param("kill", pt.FailingProcessStage, id="process-stage-SIGKILLed"),
    pytest.param("setup", pt.FailingThreadStage, id="thread-stage-setup-raises"),
    pytest.param("main", pt.FailingThreadStage, id="thread-stage-main-crashes"),
    pytest.param("main", pt.FailingProcessStage, id="process-stage-main-crashes"),
]


@pytest.mark.parametrize("waiter", ["results", "results-in-another-thread", "join", "put"])
@pytest.mark.parametrize(("how", "stage"), FAILURES)
def test_every_waiter_returns_promptly_once_a_stage_fails(
    how: str, stage: type[StageWorker], waiter: str, start_method: str
) -> None:
    """increment -> Failing -> tag; Failing fails while the waiter waits.

    Mid-flow (after 5 results) for a crash or a SIGKILL; in setup, once the
    input is full. results() ends with PipelineFailedError naming the stage,
    join() returns True, a put() blocked on the full input raises
    PipelineFailedError: each within PROMPT seconds of the failure. Then
    accepted == emitted + failed + dropped + lost, and every accepted item is
    a result, a dead letter, or (only the one a killed process held) lost.
    """
    context = multiprocessing.get_context(start_method)
    gate, failed_at = context.Event(), context.Value("d", 0.0)
    pipeline = Pipeline("failing", maxsize=4)
    pipeline.add_stage(pt.increment)
    pipeline.add_stage(stage, name="Failing", how=how, gate=gate, failed_at=failed_at)
    pipeline.add_stage(pt.tag)
    results: list[Any] = []
    errors: list[BaseException] = []
    returned: list[float] = []

    def collect() -> None:
        try:
            for result in pipeline.results():
                results.append(result)
        except PipelineFailedError as exc:
            errors.append(exc)
        returned.append(time.monotonic())

    def open_gate() -> None:  # the waiter waits by now: the input is full, or results flow
        try:
            if waiter == "put" or how == "setup":
                first: Any = pipeline.workers[0]
                pt.wait_for(first.input_queue.full, JOIN)
            else:
                pt.wait_for(lambda: pipeline.stats.emitted >= 5, JOIN)
        finally:
            gate.set()

    opener = threading.Thread(target=open_gate)
    pipeline.start()
    try:
        opener.start()
        if waiter == "put":
            with pytest.raises(PipelineFailedError) as raised:
                for i in range(100_000):
                    pipeline.put(i)
            returned.append(time.monotonic())
            errors.append(raised.value)
        else:
            pipeline.feed(range(100_000))
        if waiter == "results":
            collect()
        elif waiter == "results-in-another-thread":
            reader = threading.Thread(target=collect)
            reader.start()
            reader.join(JOIN)
            assert not reader.is_alive()
        elif waiter == "join":
            assert pipeline.join(JOIN)
            returned.append(time.monotonic())
        if waiter in ("join", "put"):
            collect()  # the results collected meanwhile, then the error
    finally:
        gate.set()
        pipeline.stop()
        opener.join(JOIN)
    assert 0 < returned[0] - failed_at.value < PROMPT, returned[0] - failed_at.value
    assert len(errors) == (2 if waiter == "put" else 1)  # results() raised, and put() too
    for error in errors:
        assert isinstance(error, PipelineFailedError)
        assert (error.stages, error.workers) == (("Failing",), ("failing.Failing",))
        assert "stage 'Failing'" in str(error) and error.__cause__ is not None
    stats = pipeline.stats
    assert stats.ended and stats.failed_workers == ("failing.Failing",)
    assert stats.accepted == stats.emitted + stats.failed + stats.dropped + stats.lost, stats
    assert (stats.emitted, stats.failed) == (len(results), len(pipeline.dead_letters))
    assert stats.lost == (1 if how == "kill" else 0), stats
    # increment adds 1, Failing and tag keep the value: trace every item back to its input.
    originals = [value - 1 for _, value in results]
    originals += [d.item - (d.stage != "increment") for d in pipeline.dead_letters]
    assert len(set(originals)) == len(originals) == stats.accepted - stats.lost
    assert set(originals) <= set(range(stats.accepted))
    if how == "main":  # the item whose process_item() ended main() is a dead letter, not lost
        assert any(isinstance(d.error, SystemExit) for d in pipeline.dead_letters)


def test_results_waiting_on_a_process_stages_queue_end_when_another_stage_fails(start_method: str) -> None:
    """Failing (a thread, setup raises) -> Square (a process): results() waits on a multiprocessing
    queue, which nothing will fill; it raises PipelineFailedError within PROMPT seconds."""
    context = multiprocessing.get_context(start_method)
    gate, failed_at = context.Event(), context.Value("d", 0.0)
    pipeline = Pipeline("last-is-process", maxsize=4)
    pipeline.add_stage(pt.FailingThreadStage, name="Failing", how="setup", gate=gate, failed_at=failed_at)
    pipeline.add_stage(pt.Square)
    pipeline.start()
    try:
        pt.wait_for(lambda: pipeline.workers[1].state is WorkerState.RUNNING, JOIN)
        pipeline.put(3)
        timer = threading.Timer(0.2, gate.set)  # results() below is waiting by then, or soon after
        timer.start()
        with pytest.raises(PipelineFailedError, match="stage 'Failing'"):
            list(pipeline.results())
        returned = time.monotonic()
        timer.join(JOIN)
    finally:
        gate.set()
        pipeline.stop()
    assert 0 < returned - failed_at.value < PROMPT
    stats = pipeline.stats
    assert (stats.accepted, stats.emitted, stats.failed, stats.lost) == (1, 0, 1, 0), stats
    assert [(d.stage, d.item) for d in pipeline.dead_letters] == [("Failing", 3)]


def test_a_killed_process_stage_loses_at_most_the_item_it_held(start_method: str) -> None:
    """SIGKILL the process stage of thread -> process -> thread mid-flow, 25 times.

    Each time: at most one item is lost (the one the process held), the
    count is exact (accepted == emitted + failed + dropped + lost), and every
    other accepted item is a result or a dead letter, exactly once. Before,
    what the killed child had put() but its queue's feeder thread had not yet
    written into the pipe vanished with it, and a child killed holding its
    input queue's read lock left that queue unreadable: up to maxsize + 1
    items lost, in most runs.
    """
    began = time.monotonic()
    for run in range(25):
        pipeline = Pipeline("killed", maxsize=4)
        pipeline.add_stage(pt.increment).add_stage(pt.Square).add_stage(pt.tag)
        results: list[Any] = []
        pipeline.start()
        try:
            pipeline.feed(range(100_000))
            victim: Any = pipeline.workers[1]
            with pytest.raises(PipelineFailedError, match="stage 'Square'"):
                for result in pipeline.results():
                    results.append(result)
                    if len(results) == 100:
                        victim.kill()  # SIGKILL, wherever the child is in its loop
        finally:
            pipeline.stop()
        stats = pipeline.stats
        assert stats.failed_workers == ("killed.Square",)
        assert stats.lost <= 1, (run, stats)
        assert stats.accepted == stats.emitted + stats.failed + stats.dropped + stats.lost, (run, stats)
        assert (stats.emitted, stats.failed) == (len(results), len(pipeline.dead_letters))
        # increment: x + 1, Square: squared, tag: ("r", value); a dead letter waited for its stage.
        undo = {"increment": lambda v: v, "Square": lambda v: v - 1, "tag": lambda v: math.isqrt(v) - 1}
        originals = [math.isqrt(value) - 1 for _, value in results]
        originals += [undo[d.stage](d.item) for d in pipeline.dead_letters]
        assert len(set(originals)) == len(originals) == stats.accepted - stats.lost, run
        assert set(originals) <= set(range(stats.accepted)), run
    assert time.monotonic() - began < 90


def test_a_process_stage_given_a_queue_queue_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError) as raised:
        pt.TransformStage("Transform", queue.Queue(), queue.Queue())
    message = str(raised.value)
    assert "TransformStage 'Transform'" in message and "input_queue" in message
    assert "queue.Queue" in message and "multiprocessing" in message and "Pipeline" in message


def test_the_guides_pattern_3_with_the_builder(monkeypatch: pytest.MonkeyPatch, start_method: str) -> None:
    """Pattern 3 of the Workers guide: Fetch (thread) -> Transform (process) -> Save (thread).

    The guide's classes, with TransformStage a ProcessStageWorker; the
    builder chooses the queues. Adapted to end: the input is closed after
    the ten items, so the pipeline ends by itself.
    """
    printed = pt.Printed().install(monkeypatch)  # SaveStage prints in a thread of this process
    pipeline = Pipeline("Pipeline")
    pipeline.add_stage(pt.FetchStage).add_stage(pt.TransformStage).add_stage(pt.SaveStage)
    with pipeline:
        pipeline.start()
        pipeline.feed(range(10))  # Feed pipeline
        assert list(pipeline.results()) == []  # SaveStage returns None: nothing comes out
    saved = sorted(line for line in printed.lines if line.startswith("Saved: "))
    expected = sorted(f"Saved: {{'id': {i}, 'raw_data': 'data-{i}', 'transformed': True}}" for i in range(10))
    assert saved == expected
    assert pipeline.stats.dropped == 10
    check_conservation(pipeline)


def test_the_guides_pattern_3_wired_by_hand_ends_by_itself(
    monkeypatch: pytest.MonkeyPatch, start_method: str
) -> None:
    """The guide's wiring with the right queue types, ended by END_OF_STREAM; run_forever() returns."""
    printed = pt.Printed().install(monkeypatch)
    context = multiprocessing.get_context(start_method)
    # Create pipeline
    fetch_to_transform = context.Queue(8)  # the guide: Queue(); a process reads it
    transform_to_save = context.Queue(8)  # the guide: Queue(); a process writes it
    input_queue: queue.Queue[Any] = queue.Queue()
    try:
        server = Server(name="Pipeline")
        server.add_worker(pt.FetchStage("Fetch", input_queue, fetch_to_transform))
        server.add_worker(pt.TransformStage("Transform", fetch_to_transform, transform_to_save))
        server.add_worker(pt.SaveStage("Save", transform_to_save, queue.Queue()))

        # Feed pipeline
        for i in range(10):
            input_queue.put(i)
        input_queue.put(END_OF_STREAM)  # added: ends the stream, so run_forever() returns

        # Run pipeline
        assert server.run_forever() == 0
    finally:
        for q in (fetch_to_transform, transform_to_save):
            pt.close_queue(q)
    saved = [line for line in printed.lines if line.startswith("Saved: ")]
    assert len(saved) == 10
    stages: list[Any] = list(server.workers)
    assert [s.stats.items_in for s in stages] == [10, 10, 10]


def test_stage_workers_stop_at_once_and_report_a_result_they_cannot_pass_on() -> None:
    """A stopped stage whose output stays full reports its last result instead of hanging."""
    events: list[dict[str, Any]] = []
    started = threading.Event()

    class Hold(StageWorker):
        def process_item(self, item: int) -> int:
            started.set()
            return item

        def lifecycle(self, event_type: str, **data: Any) -> None:
            if event_type == "error":
                events.append(data)

    inbox: queue.Queue[int] = queue.Queue()
    outbox: queue.Queue[int] = queue.Queue(maxsize=1)
    outbox.put(-1)  # full, and nobody reads it
    inbox.put(7)
    worker = Hold("hold", inbox, outbox, put_grace=0.1)
    worker.start()
    try:
        assert started.wait(JOIN)
        worker.stop()
        assert worker.join(JOIN)
    finally:
        worker.stop()
        worker.join(JOIN)
    assert [(e["item"], e["phase"], type(e["exception"])) for e in events] == [
        (7, "put", PipelineStoppedError)
    ]
    stats = worker.stats
    assert (stats.items_in, stats.items_out, stats.failed, stats.in_flight) == (1, 0, 1, 0)


def test_builder_errors() -> None:
    pipeline = Pipeline("errors")
    with pytest.raises(RuntimeError, match="add a stage"):
        pipeline.start()
    with pytest.raises(TypeError, match="subclass StageWorker"):
        pipeline.add_stage(Server)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="process stage"):
        pipeline.add_stage(pt.Square, kind="thread")
    with pytest.raises(ValueError, match="workers"):
        pipeline.add_stage(pt.increment, workers=0)
    pipeline.add_stage(pt.increment)
    with pytest.raises(ValueError, match="taken"):
        pipeline.add_stage(pt.square, name="increment")
    with pytest.raises(RuntimeError, match="start"):
        pipeline.put(1)
    with pytest.raises(ValueError, match="maxsize"):
        Pipeline("x", maxsize=0)
    with pytest.raises(TypeError, match="process_item"):
        ProcessStageWorker("abstract", None, None)  # type: ignore[abstract]
    assert isinstance(DeadLetter("s", 1, ValueError()), DeadLetter)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_idle_stage_worker_stops_in_milliseconds(kind: str, start_method: str) -> None:
    context = multiprocessing.get_context(start_method)
    inbox, outbox = (
        (context.Queue(), context.Queue()) if kind == "process" else (queue.Queue(), queue.Queue())
    )
    worker: Any = (
        pt.Square("idle", inbox, outbox) if kind == "process" else pt.FetchStage("idle", inbox, outbox)
    )
    worker.start()
    try:
        pt.wait_for(lambda: worker.state is WorkerState.RUNNING, JOIN)
        time.sleep(0.05)
        asked = time.monotonic()
        worker.stop()
        assert worker.join(JOIN)
        took = time.monotonic() - asked
    finally:
        worker.stop()
        worker.join(JOIN)
        for q in (inbox, outbox):
            pt.close_queue(q)
    assert took < (0.25 if kind == "thread" else 1.0), f"stop took {took:.3f}s"
    assert worker.state is WorkerState.STOPPED


def test_a_process_stage_that_cannot_be_pickled_fails_start_cleanly(start_method: str) -> None:
    if start_method == "fork":
        pytest.skip("fork does not pickle the worker")
    from spoc.workers import WorkerNotPicklableError

    pipeline = Pipeline("lambda")
    pipeline.add_stage(pt.increment).add_stage(lambda x: x, kind="process")
    with pytest.raises(WorkerNotPicklableError):
        pipeline.start()
    assert pipeline.workers == ()
    with pytest.raises(RuntimeError, match="start"):
        pipeline.put(1)


def test_feed_from_a_queue_until_stop_conserves_every_item(start_method: str) -> None:
    source: queue.Queue[int] = queue.Queue()
    for i in range(200):
        source.put(i)
    pipeline = Pipeline("from-queue", maxsize=4)
    pipeline.add_stage(pt.increment).add_stage(pt.Square)
    pipeline.feed_from(source)
    pipeline.start()
    try:
        results = []
        for result in pipeline.results():
            results.append(result)
            if len(results) == 50:
                break
        assert pipeline.stop(10)
        results += list(pipeline.results())
    finally:
        pipeline.stop()
    stats = pipeline.stats
    # Every item the pipeline took came out; the rest are still in the source queue.
    assert stats.accepted == len(results) and stats.failed == 0 and stats.in_flight == 0
    left = []
    while not source.empty():
        left.append(source.get_nowait())
    assert sorted(results + [(i + 1) ** 2 for i in left]) == sorted((i + 1) ** 2 for i in range(200))


def test_feed_from_refuses_what_is_no_queue() -> None:
    pipeline = Pipeline("bad-source")
    pipeline.add_stage(pt.increment)
    with pytest.raises(TypeError, match="cannot read"):
        pipeline.feed_from(42)


def test_stats_called_as_a_method_still_works_with_a_deprecation_warning() -> None:
    pipeline = Pipeline("old-spelling", maxsize=4)
    pipeline.add_stage(abs)
    with pipeline:
        pipeline.start()
        pipeline.feed([-1, -2])
        assert sorted(pipeline.results()) == [1, 2]
    with pytest.warns(DeprecationWarning, match=r"Pipeline\.stats\(\).*Pipeline\.stats"):
        old = pipeline.stats()
    assert old == pipeline.stats and old.emitted == 2
