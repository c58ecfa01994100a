"""What travels through a pipeline's hops around items: batches, tracked envelopes, tombstones.

A :class:`Batch` carries several items across a process hop in one pickle
and one write (``Pipeline(batch=...)``); readers hand its items out one by one
(``_queues.BatchedReader``).

A :class:`Pipeline` fed from a job source that acknowledges late (one whose
reader's :meth:`~spoc.workers.patterns.QueueReader.defer` gives a token,
such as ``spoc-workers-redis``'s ``RedisStream``) wraps each item it accepts
in a :class:`Tracked` envelope carrying the token. Every stage hands the
item inside to ``process_item`` and wraps the result in the same envelope,
so the token travels with the item, across process hops too. Where the item
leaves the pipeline, the pipeline settles the token:

* a result, once the loop over :meth:`Pipeline.results` that got it comes
  back for the next one, or leaves (its body ran): acknowledged;
* a dead letter: acknowledged, unless the pipeline's stop made it one
  (:class:`PipelineStoppedError`): then it is left to be delivered again;
* an item a stage dropped (``process_item`` returned None): the stage passes
  a *tombstone* on instead (the envelope around :data:`DROPPED`), which
  later stages pass on untouched and the pipeline acknowledges.

An item still inside when the process dies is never settled: its source
delivers it again (at least once, end to end).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._support import Marker

__all__ = ["DROPPED", "Batch", "Tracked", "is_tombstone"]


DROPPED: Any = Marker("DROPPED", __name__)
"""Carried by a tombstone: the tracked item was dropped by a stage (``process_item`` returned None)."""


class Tracked(NamedTuple):
    """An item and the token its source settles once the item has left the pipeline."""

    tag: Any  # (index of the pipeline's feeder, the source reader's token); picklable
    item: Any


def is_tombstone(obj: object) -> bool:
    """Whether ``obj`` is what a stage passes on for a tracked item it dropped."""
    return type(obj) is Tracked and obj.item is DROPPED


class Batch:
    """Items that cross a process hop together (see ``Pipeline(batch=...)``): one pickle, one write.

    Readers hand the items out one by one, in order; a :class:`Batch` is
    never handed to a worker's handler.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __reduce__(self) -> tuple[type[Batch], tuple[list[Any]]]:
        return Batch, (self.items,)

    def __repr__(self) -> str:
        return f"Batch({len(self.items)} items)"
