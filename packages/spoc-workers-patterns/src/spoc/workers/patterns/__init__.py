"""Ready-made worker base classes: the Workers guide's patterns, for threads and for processes.

Subclass one and override one method, as ``def`` or ``async def``:

- :class:`PeriodicWorker` (threads) and :class:`ProcessPeriodicWorker`
  (processes): override ``execute_task()``, run on a drift-free schedule.
- :class:`JobProcessor` and :class:`ProcessJobProcessor`: override
  ``process_job(job)``, called for every job taken from a queue.
- :class:`StageWorker` and :class:`ProcessStageWorker`: override
  ``process_item(item)``, one stage of a pipeline.
- :class:`HealthMonitor` (threads only: it restarts worker objects of its
  own process): watches workers and restarts the dead ones with backoff.

:class:`Pipeline` wires stage workers (thread and process stages mixed) with
bounded queues of the right type. Statistics (``worker.stats``,
``pipeline.stats``) are frozen snapshots, correct in the parent for
process workers too.

A *job source* other than a queue (such as ``spoc-workers-redis``'s
``RedisStream``) plugs in by having a ``spoc_reader()`` method that returns
a :class:`QueueReader`.
"""

from ._health import HealthMonitor
from ._jobs import JobProcessor, JobStats, ProcessJobProcessor
from ._periodic import Overrun, PeriodicStats, PeriodicWorker, ProcessPeriodicWorker
from ._pipeline import (
    END_OF_STREAM,
    DeadLetter,
    Pipeline,
    PipelineFailedError,
    PipelineStats,
    PipelineStoppedError,
    ProcessStageWorker,
    StageStats,
    StageWorker,
)
from ._queues import QueueReader

__all__ = [
    "END_OF_STREAM",
    "DeadLetter",
    "HealthMonitor",
    "JobProcessor",
    "JobStats",
    "Overrun",
    "PeriodicStats",
    "PeriodicWorker",
    "Pipeline",
    "PipelineFailedError",
    "PipelineStats",
    "PipelineStoppedError",
    "ProcessJobProcessor",
    "ProcessPeriodicWorker",
    "ProcessStageWorker",
    "QueueReader",
    "StageStats",
    "StageWorker",
]
