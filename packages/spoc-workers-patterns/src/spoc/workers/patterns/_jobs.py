"""Job processors: take jobs from a queue and call ``process_job(job)`` for each."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spoc.workers import AbstractWorker, ProcessWorker, ThreadWorker

from ._consume import DURATION_FIELDS, Consumer, aconsume, consume
from ._queues import check_shareable, reader_for
from ._support import has_async, new_counters

if TYPE_CHECKING:
    from prometheus_client.core import Metric

__all__ = ["JobProcessor", "JobStats", "ProcessJobProcessor"]

_FIELDS = ("processed", "failed")
# What a reader is told about a job whose processing was cut short (a
# BaseException such as a cancellation): not processed, so not acknowledged.
_INTERRUPTED = RuntimeError("process_job() was interrupted")
_DEFAULT_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class JobStats:
    """A snapshot of a job processor's counters, over all its runs so far.

    Attributes:
        processed: jobs whose ``process_job()`` returned normally.
        failed: jobs whose ``process_job()`` raised (plus jobs that could not
            be read from a multiprocessing queue, e.g. could not be unpickled).
    """

    processed: int
    failed: int


class _JobMixin(AbstractWorker):
    """The consuming loop shared by :class:`JobProcessor` and :class:`ProcessJobProcessor`."""

    job_queue: Any

    def _init_jobs(self, job_queue: Any) -> None:
        reader_for(job_queue)  # a TypeError now for something that is no queue
        self.job_queue = job_queue
        self._counters = new_counters(self, (*_FIELDS, *DURATION_FIELDS))

    @abstractmethod
    def process_job(self, job: Any) -> Awaitable[None] | None:
        """Process one job; override it, as ``def`` or ``async def``.

        An exception is reported as a lifecycle ``"error"`` event with
        ``phase="process_job"`` and ``job=job``, and counted in
        ``stats.failed``; the worker goes on with the next job.
        """

    @property
    def stats(self) -> JobStats:
        """A snapshot of the counters, readable from any thread (and, for a process, from the parent)."""
        values = self._counters.snapshot()
        return JobStats(processed=int(values["processed"]), failed=int(values["failed"]))

    def jobs_done(self) -> int:
        """Jobs finished over all runs, processed or failed (``stats``; for ``Recycle(jobs=...)``)."""
        values = self._counters.snapshot()
        return int(values["processed"] + values["failed"])

    def collect_metrics(self) -> Iterator[Metric]:
        """This worker's Prometheus families, read in the parent at each scrape (see ``/metrics``).

        ``spoc_jobs_total{outcome}`` (``done``, ``failed``: ``stats``), the
        histogram ``spoc_job_duration_seconds`` of ``process_job()``, and the
        families of ``job_queue`` when it has a ``collect_metrics()`` of its
        own (a job source such as a Redis stream).
        """
        from ._metrics import counter_family, duration_family  # noqa: PLC0415 (only when scraped)

        values = self._counters.snapshot()
        yield counter_family(
            "spoc_jobs",
            "Jobs a job processor finished, by outcome: done or failed.",
            {},
            values,
            {"done": "processed", "failed": "failed"},
        )
        yield duration_family("spoc_job_duration_seconds", "Seconds process_job() took, per job.", {}, values)
        source_metrics = getattr(self.job_queue, "collect_metrics", None)
        if callable(source_metrics):
            yield from source_metrics()

    def main(self) -> Awaitable[None] | None:
        """Take and process jobs until stopped (async when ``process_job`` is ``async def``)."""
        consumer = Consumer(
            self,
            self.job_queue,
            self.process_job,
            self._counters,
            phase="process_job",
            subject="job",
            interrupted=_INTERRUPTED,
        )
        if has_async(self.process_job, self.lifecycle):
            return aconsume(consumer)
        consume(consumer)
        return None


class JobProcessor(_JobMixin, ThreadWorker):
    """A thread worker that takes jobs from ``job_queue`` and calls :meth:`process_job` for each.

    The wait for the next job wakes within milliseconds of ``stop()`` (no
    ``get(timeout=1.0)`` polling); a job in hand is finished first, the jobs
    still queued stay in the queue. ``task_done()`` is called for every job
    taken, also when ``process_job`` raised, so ``job_queue.join()`` works.
    Several processors may share one queue.

    Examples:
        >>> class Mailer(JobProcessor):
        ...     def process_job(self, job):
        ...         print("sending", job)
        >>> import queue
        >>> jobs = queue.Queue()
        >>> mailer = Mailer("mailer", jobs)

    Args:
        name: the worker's name (defaults to the class name).
        job_queue: a :class:`queue.Queue` (or subclass), a
            :mod:`multiprocessing` ``Queue``/``JoinableQueue``, or any object
            with ``get(timeout=...)`` and ``get_nowait()`` (polled).
        daemon: see :class:`~spoc.workers.AbstractWorker`.
        stop_timeout: see :class:`~spoc.workers.AbstractWorker`.

    Raises:
        TypeError: ``job_queue`` is not a queue.
    """

    def __init__(
        self,
        name: str | None,
        job_queue: Any,
        *,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout)
        self._init_jobs(job_queue)


class ProcessJobProcessor(_JobMixin, ProcessWorker):
    """:class:`JobProcessor` in a child process, for CPU-bound jobs.

    ``job_queue`` must be a :mod:`multiprocessing` queue (a
    ``JoinableQueue`` makes ``job_queue.join()`` work), made from the context
    of the worker's start method, e.g.
    ``multiprocessing.get_context(worker.start_method).JoinableQueue()``.
    The counters live in shared memory, so ``stats`` read in the parent
    shows what the child did.

    Args:
        name: see :class:`JobProcessor`.
        job_queue: a :mod:`multiprocessing` queue (or a manager's queue proxy).
        daemon: see :class:`~spoc.workers.ProcessWorker`.
        stop_timeout: see :class:`~spoc.workers.ProcessWorker`.
        start_method: see :class:`~spoc.workers.ProcessWorker`.

    Raises:
        TypeError: ``job_queue`` is a :class:`queue.Queue` (or another queue
            that cannot cross processes), or not a queue.
    """

    def __init__(
        self,
        name: str | None,
        job_queue: Any,
        *,
        daemon: bool = True,
        stop_timeout: float = _DEFAULT_STOP_TIMEOUT,
        start_method: str | None = None,
    ) -> None:
        super().__init__(name, daemon=daemon, stop_timeout=stop_timeout, start_method=start_method)
        check_shareable(
            f"{type(self).__name__} {self.name!r}",
            "job_queue",
            job_queue,
            "Use a multiprocessing queue, e.g. "
            "multiprocessing.get_context(worker.start_method).JoinableQueue(), "
            "or a thread JobProcessor.",
        )
        self._init_jobs(job_queue)
