"""Building a pipeline: checking a stage as it is added, then making its queues and workers.

:func:`make_stage` turns ``Pipeline.add_stage``'s arguments into a
:class:`StageSpec`; :func:`wire` makes, for ``Pipeline.start``, the queue of
each hop (a ``queue.Queue`` between threads, a multiprocessing queue
wherever a process is at either end), each stage's shared end-marker count,
the dead-letter queue, and the stage workers, each linked to its stage and
added to a :class:`~spoc.workers.Server` of the pipeline's own.
"""

from __future__ import annotations

import functools
import queue
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from spoc.workers import ProcessWorker, Server, WorkerEvent

from ._channels import LetterBox
from ._hops import Hop, LocalCount
from ._stages import ProcessStageWorker, StageLink, StageWorker, function_stage, is_stage_worker, stage_kind
from ._switch import StageSwitch

__all__ = ["StageKind", "StageSpec", "Wiring", "end_markers_into", "make_stage", "unbuild", "wire"]

StageKind = Literal["thread", "process"]


@dataclass
class StageSpec:
    """One stage as added: how to make its workers, and (once started) the workers."""

    name: str
    factory: Any
    kind: StageKind
    workers: int
    options: dict[str, Any]
    restart: str = "never"  # the Server's restart policy for the stage's workers
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
    options = dict(options)
    restart = options.pop("restart", "never")
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
    carrier: StageKind = "process" if kind == "process" else "thread"
    if restart not in ("never", "on-failure"):
        raise ValueError(f"{who}: stage {name!r}: restart must be 'never' or 'on-failure', got {restart!r}")
    if restart != "never" and carrier != "process":
        raise ValueError(
            f"{who}: stage {name!r}: restart={restart!r} is for process stages (a thread stage's "
            "worker does not die by itself: an item that raises is a dead letter)"
        )
    return StageSpec(name, factory, carrier, workers, options, restart)


@dataclass
class Wiring:
    """What :func:`wire` made: the queues, the server of the stage workers, and who is in which stage."""

    hops: list[Hop]  # hops[i] feeds stage i; hops[-1] holds the results
    dead_letters: queue.Queue[Any]  # the queue dead letters are reported into
    server: Server
    stage_of: dict[str, str]  # stage worker name -> stage name
    switches: dict[int, StageSwitch]  # stage index -> the switch of a process stage
    final_markers: int  # end markers the results hop will carry

    def release(self, timeout: float = 5.0) -> None:
        """End the switches' threads (the workers have ended) and close their pipes."""
        for switch in self.switches.values():
            switch.close(timeout)


def wire(
    pipeline: str,
    stages: list[StageSpec],
    *,
    maxsize: int,
    method: str,
    start_method: str | None,
    shutdown_timeout: float,
    listener: Callable[[WorkerEvent], None],
    switch_failed: Callable[[str, BaseException], None],
    batch: int = 1,
    linger: float = 0.0,
) -> Wiring:
    """Make the queues (from start method ``method``'s context) and the stage workers, not
    started, in a server with ``listener``. ``start_method``: the pipeline's, given to process stages;
    ``batch`` and ``linger``: the pipeline's, given to every stage worker (see :class:`StageLink`);
    ``switch_failed(stage, exception)``: called if a process stage's switch fails.

    If a worker cannot be made, what was made is released and the error raised.

    Raises:
        TypeError: a stage's factory made something else than a stage worker.
        ValueError: a process stage's start method differs from ``context``'s.
    """
    # Every hop is a Hop in this process: a process stage's workers read and write private
    # pipes, which its switch connects to the hops around it (see _switch).
    readers = [1 if s.kind == "process" else s.workers for s in stages]
    kinds = ["thread", *(s.kind for s in stages), "thread"]  # the pipeline itself is a thread end
    # A hop at a process stage holds maxsize batches: items cross into processes batch by batch.
    sizes = [maxsize * batch if "process" in kinds[i : i + 2] else maxsize for i in range(len(readers) + 1)]
    hops = [  # the pipeline reads the last one
        Hop(size, n, feeds_processes=kind == "process")
        for size, n, kind in zip(sizes, (*readers, 1), kinds[1:], strict=True)
    ]
    server = Server(pipeline, shutdown_timeout=shutdown_timeout)
    # A stage worker that fails is seen at once: a thread reports its end itself, and
    # the server's supervisor waits on every process's sentinel and status pipe.
    server.add_listener(listener)
    dead_letters: queue.Queue[Any] = queue.Queue()
    wiring = Wiring(hops, dead_letters, server, {}, {}, end_markers_into(stages, len(stages)))
    try:
        for index, stage in enumerate(stages):
            if stage.kind == "process":
                wiring.switches[index] = StageSwitch(
                    pipeline,
                    stage.name,
                    upstream=hops[index],
                    downstream=hops[index + 1],
                    dead_letters=dead_letters,
                    ends_expected=end_markers_into(stages, index),
                    batch=batch,
                    linger=linger,
                    on_failure=functools.partial(switch_failed, stage.name),
                )
            _build_stage(
                pipeline,
                stages,
                index,
                wiring=wiring,
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


def end_markers_into(stages: list[StageSpec], index: int) -> int:
    """How many end markers hop ``index`` carries: one per writer (a process stage's switch,
    or a thread stage's worker; the pipeline's input for the first hop)."""
    if index == 0 or stages[index - 1].kind == "process":
        return 1
    return stages[index - 1].workers


def _build_stage(
    pipeline: str,
    stages: list[StageSpec],
    index: int,
    *,
    wiring: Wiring,
    method: str,
    start_method: str | None,
    batch: int,
    linger: float,
) -> None:
    stage = stages[index]
    switch = wiring.switches.get(index)
    total = end_markers_into(stages, index) + stage.workers - 1  # markers to take (see _stages)
    link = StageLink(
        stage=stage.name,
        next_stage=stages[index + 1].name if index + 1 < len(stages) else "results",
        siblings=stage.workers - 1,
        markers_left=LocalCount(total),
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
        queues: tuple[Any, Any] = (wiring.hops[index], wiring.hops[index + 1])
        if switch is not None:
            # Its own pipes, its own end marker (one per worker, from the switch), its own letters.
            queues = switch.add_slot(name)
            link = replace(link, siblings=0, markers_left=LocalCount(1), dead_letters=LetterBox(queues[1]))
            link.switch = switch
        worker = stage.factory(name, *queues, **options)
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
        wiring.server.add_worker(worker, restart=stage.restart)  # type: ignore[arg-type]
