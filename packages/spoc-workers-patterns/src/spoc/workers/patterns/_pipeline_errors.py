"""What a pipeline reports when items or workers fail: its two errors and the dead letter."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from spoc.workers import WorkerRemoteError

__all__ = [
    "DeadLetter",
    "PipelineFailedError",
    "PipelineStoppedError",
    "picklable_letter",
    "stage_failure",
]


class PipelineStoppedError(RuntimeError):
    """Why an item became a dead letter when a stage or the pipeline was stopped.

    Either a stage worker was stopped while its output queue stayed full (the
    item was processed but not passed on), or the pipeline was stopped past
    its budget while the item still waited in a queue.
    """


class PipelineFailedError(RuntimeError):
    """A stage worker failed, so the pipeline stopped: raised by :meth:`Pipeline.put`,
    :meth:`Pipeline.close` and, after the last result, by :meth:`Pipeline.results`.

    The message names the failed stages and workers and why they failed;
    ``__cause__`` is the first failed worker's exception. Every accepted item
    is still accounted for in :meth:`Pipeline.stats` and
    :attr:`Pipeline.dead_letters`.

    Attributes:
        pipeline: the pipeline's name.
        stages: the names of the stages whose workers failed.
        workers: the names of the failed workers.
    """

    def __init__(
        self, message: str, pipeline: str, stages: tuple[str, ...], workers: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.pipeline = pipeline
        self.stages = stages
        self.workers = workers

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.pipeline, self.stages, self.workers))


@dataclass(frozen=True)
class DeadLetter:
    """An item that did not make it through the pipeline, and why.

    Attributes:
        stage: the stage the item was meant for: the one that raised on it,
            whose worker could not pass its result on, or whose input queue
            still held it when the pipeline was stopped.
        item: the item: the stage's input when ``process_item`` raised or the
            item was still queued; the stage's *result* when it could not be
            passed on (``error`` is then a :class:`PipelineStoppedError`).
        error: the exception (a :class:`~spoc.workers.WorkerRemoteError`
            stands for one that could not be pickled back from a process).
        worker: the name of the worker that reported it (None when the
            pipeline found the item in a queue).
    """

    stage: str
    item: Any
    error: BaseException
    worker: str | None = None


def picklable_letter(letter: DeadLetter) -> DeadLetter:
    """The letter itself when it pickles; else with a stand-in error, then a stand-in item."""
    try:
        ForkingPickler.dumps(letter)
        return letter
    except Exception:
        pass
    error = letter.error
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    remote = WorkerRemoteError(f"{type(error).__module__}.{type(error).__qualname__}", str(error), text)
    letter = DeadLetter(stage=letter.stage, item=letter.item, error=remote, worker=letter.worker)
    try:
        ForkingPickler.dumps(letter)
        return letter
    except Exception:
        return DeadLetter(stage=letter.stage, item=repr(letter.item), error=remote, worker=letter.worker)


def stage_failure(
    pipeline: str, failed: Sequence[tuple[str, str, BaseException | None]]
) -> PipelineFailedError:
    """The error that stops pipeline ``pipeline``: ``failed`` holds (stage, worker, exception)
    of each failed stage worker, the first to fail first (there is at least one)."""
    reasons = "; ".join(
        f"stage {stage!r}, worker {worker!r}: {_describe(exc)}" for stage, worker, exc in failed
    )
    error = PipelineFailedError(
        f"pipeline {pipeline!r} stopped because a stage worker failed ({reasons})",
        pipeline,
        tuple(dict.fromkeys(stage for stage, _, _ in failed)),
        tuple(worker for _, worker, _ in failed),
    )
    error.__cause__ = failed[0][2]
    return error


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no exception recorded"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
