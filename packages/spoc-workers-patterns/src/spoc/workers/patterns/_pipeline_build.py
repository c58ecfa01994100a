"""Building a pipeline: checking a stage as it is added, then making its queues and workers.

:func:`make_stage` turns ``Pipeline.add_stage``'s arguments into a
:class:`StageSpec`; :func:`wire` makes, for ``Pipeline.start``, the queue of
each hop (a ``queue.Queue`` between threads, a multiprocessing queue
wherever a process is at either end), each stage's shared end-marker count,
the dead-letter queue, and the stage workers, each linked to its stage and
added to a :class:`~spoc.workers.Server` of the pipeline's own.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from spoc.workers import ProcessWorker, Server, WorkerEvent

from ._hops import LocalCount, make_hop
from ._queues import is_process_queue, release_process_queue, release_semaphores
from ._stages import ProcessStageWorker, StageLink, StageWorker, function_stage, is_stage_worker, stage_kind

__all__ = ["StageKind", "StageSpec", "Wiring", "make_stage", "unbuild", "wire"]

StageKind = Literal["thread", "process"]


@dataclass
class StageSpec:
    """One stage as added: how to make its workers, and (once started) the workers."""

    name: str
    factory: Any
    kind: StageKind
    workers: int
    options: dict[str, Any]
    instances: list[StageWorker | ProcessStageWorker] = field(default_factory=list)


def make_stage(
    pipeline: str,
    stage: Any,
    *,
    workers: int,
    kind: str | None,
    name: str | None,
    options: dict[str, Any],
    taken: list[StageSpec],
) -> StageSpec:
    """Check ``add_stage``'s arguments and make the stage (see ``Pipeline.add_stage``).

    Raises:
        TypeError: ``stage`` is neither a stage class nor a callable.
        ValueError: a bad ``workers``, ``kind`` or ``name``.
    """
    who = f"pipeline {pipeline!r}"
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{who}: workers must be an int >= 1, got {workers!r}")
    if kind not in (None, "thread", "process"):
        raise ValueError(f"{who}: kind must be 'thread' or 'process', got {kind!r}")
    factory: Any
    if isinstance(stage, type):
        if not is_stage_worker(stage):
            raise TypeError(
                f"{who}: a stage class must subclass StageWorker or ProcessStageWorker, got {stage.__name__}"
            )
        actual = stage_kind(stage)
        if kind is not None and kind != actual:
            raise ValueError(f"{who}: {stage.__name__} is a {actual} stage, not kind={kind!r}")
        kind, factory, default_name = actual, stage, stage.__name__
    elif callable(stage):
        kind = kind or "thread"
        factory = function_stage(stage, kind)
        options = {**options, "function": stage}
        default_name = getattr(stage, "__name__", "") or "stage"
        if not default_name.isidentifier():
            default_name = f"stage{len(taken) + 1}"
    else:
        raise TypeError(f"{who}: a stage must be a stage class or a function")
    names = {s.name for s in taken}
    if name is not None:
        if not isinstance(name, str) or not name or name in names or name == "results":
            raise ValueError(f"{who}: stage name {name!r} is empty or taken")
    else:
        name, n = default_name, 1
        while name in names or name == "results":
            n += 1
            name = f"{default_name}-{n}"
    return StageSpec(name, factory, "process" if kind == "process" else "thread", workers, options)


@dataclass
class Wiring:
    """What :func:`wire` made: the queues, the server of the stage workers, and who is in which stage."""

    hops: list[Any]  # hops[i] feeds stage i; hops[-1] holds the results
    dead_letters: Any  # the queue the stage workers report dead letters into
    server: Server
    stage_of: dict[str, str]  # stage worker name -> stage name
    shared_counts: list[Any]  # multiprocessing.Value marker counts of process stages

    def release(self) -> None:
        """Close this process's ends of the multiprocessing queues and release their semaphores
        (and those of the stages' marker counts) now: nothing is left for the garbage collector."""
        for q in [*self.hops, self.dead_letters]:
            if is_process_queue(q):
                release_process_queue(q)
        release_semaphores(*(count.get_lock() for count in self.shared_counts))


def wire(
    pipeline: str,
    stages: list[StageSpec],
    *,
    maxsize: int,
    method: str,
    start_method: str | None,
    shutdown_timeout: float,
    listener: Callable[[WorkerEvent], None],
    batch: int = 1,
    linger: float = 0.0,
) -> Wiring:
    """Make the queues (from start method ``method``'s context) and the stage workers, not
    started, in a server with ``listener``. ``start_method``: the pipeline's, given to process stages;
    ``batch`` and ``linger``: the pipeline's, given to every stage worker (see :class:`StageLink`).

    If a worker cannot be made, what was made is released and the error raised.

    Raises:
        TypeError: a stage's factory made something else than a stage worker.
        ValueError: a process stage's start method differs from ``context``'s.
    """
    context: Any = multiprocessing.get_context(method)
    kinds = ["thread", *(s.kind for s in stages), "thread"]  # the pipeline itself is a thread end
    readers = [*(s.workers for s in stages), 1]  # the pipeline reads the last hop
    hops = [
        make_hop(context, maxsize, "process" in (kinds[i], kinds[i + 1]), readers[i])
        for i in range(len(stages) + 1)
    ]
    any_process = any(s.kind == "process" for s in stages)
    server = Server(pipeline, shutdown_timeout=shutdown_timeout)
    # A stage worker that fails is seen at once: a thread reports its end itself, and
    # the server's supervisor waits on every process's sentinel and status pipe.
    server.add_listener(listener)
    wiring = Wiring(hops, context.Queue() if any_process else queue.Queue(), server, {}, [])
    try:
        for index in range(len(stages)):
            _build_stage(
                pipeline,
                stages,
                index,
                wiring=wiring,
                context=context,
                method=method,
                start_method=start_method,
                batch=batch,
                linger=linger,
            )
    except BaseException:
        unbuild(stages, wiring)
        raise
    return wiring


def unbuild(stages: list[StageSpec], wiring: Wiring) -> None:
    """Forget the workers of a pipeline that could not start, and release its queues."""
    wiring.stage_of.clear()
    for stage in stages:
        stage.instances.clear()
    wiring.release()


def _build_stage(
    pipeline: str,
    stages: list[StageSpec],
    index: int,
    *,
    wiring: Wiring,
    context: Any,
    method: str,
    start_method: str | None,
    batch: int,
    linger: float,
) -> None:
    stage = stages[index]
    upstream = 1 if index == 0 else stages[index - 1].workers
    total = upstream + stage.workers - 1  # end markers this stage will take (see _stages)
    markers: Any = context.Value("i", total) if stage.kind == "process" else LocalCount(total)
    if stage.kind == "process":
        wiring.shared_counts.append(markers)
    link = StageLink(
        stage=stage.name,
        next_stage=stages[index + 1].name if index + 1 < len(stages) else "results",
        siblings=stage.workers - 1,
        markers_left=markers,
        dead_letters=wiring.dead_letters,
        batch=batch,
        linger=linger,
    )
    options = dict(stage.options)
    if stage.kind == "process" and start_method is not None:
        options.setdefault("start_method", start_method)
    for i in range(stage.workers):
        suffix = f"-{i + 1}" if stage.workers > 1 else ""
        name = f"{pipeline}.{stage.name}{suffix}"
        worker = stage.factory(name, wiring.hops[index], wiring.hops[index + 1], **options)
        if not is_stage_worker(worker):
            raise TypeError(
                f"pipeline {pipeline!r}: stage {stage.name!r} made {worker!r}, not a stage worker"
            )
        if isinstance(worker, ProcessWorker) and worker.start_method != method:
            raise ValueError(
                f"pipeline {pipeline!r}: worker {worker.name!r} uses start method "
                f"{worker.start_method!r}, the pipeline's queues are for {method!r}; "
                "pass start_method to Pipeline()"
            )
        worker.link_to_pipeline(link)
        wiring.stage_of[name] = stage.name
        stage.instances.append(worker)
        wiring.server.add_worker(worker)
