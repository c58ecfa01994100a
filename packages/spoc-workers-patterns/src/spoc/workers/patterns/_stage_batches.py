"""A stage that handles what arrived together at once: ``process_batch(items)``.

A stage class that defines ``process_batch`` gets, in one call, the item
taken and those that came with it: the rest of a :class:`Batch` from a
process hop, or what its worker took from a thread hop in one hold of the
lock, up to the pipeline's ``batch`` (or :data:`TAKE_AT_ONCE` when that is
1), never across an end marker. It returns one result per item, in order
(None drops that item). Everything else is the item-by-item stage's:
counts per item, dead letters per item (a ``process_batch`` that raises
fails every item of its batch), tracked items, batching of the output.
"""

from __future__ import annotations

import time
from typing import Any

from ._consume import Events, Several
from ._envelopes import DROPPED, Tracked
from ._hops import END_OF_STREAM, TAKE_AT_ONCE
from ._stages import StageLink, _StageConsumer, _StageMixin
from ._support import Counters

__all__ = ["BatchStageConsumer", "takes_batches"]


class BatchStageConsumer(_StageConsumer):
    """A batch stage's steps of the consume loop: the handler gets a list, results go as :class:`Several`."""

    def __init__(self, worker: _StageMixin, link: StageLink | None, counters: Counters) -> None:
        super().__init__(worker, link, counters)
        self.handler = self.gather
        self.at_most = link.batch if link is not None and link.batch > 1 else TAKE_AT_ONCE
        self.items: list[Any] = []
        self.tags: list[Any] = []
        self.tombstones: list[Any] = []  # dropped tracked items that came with the batch: passed on
        self.taken = 0  # items of the batch in hand, tombstones included (each is done for the reader)
        self.process_batch = worker.process_batch

    def gather(self, first: Any) -> Any:
        """The handler: ``process_batch`` of ``first`` (screened by :meth:`arrived`) and what came with it."""
        items, tags, self.tombstones = [first], [self.tag], []
        self.tag = None
        for raw in self.reader.take_ready(self.at_most - 1, END_OF_STREAM):
            if type(raw) is Tracked:
                self.tracking = True
                if raw.item is DROPPED:
                    self.tombstones.append(raw)
                    continue
                items.append(raw.item)
                tags.append(raw.tag)
            else:
                items.append(raw)
                tags.append(None)
            self.add("items_in")
        self.items, self.tags, self.taken = items, tags, len(items) + len(self.tombstones)
        return self.process_batch(items)

    def handled(self, item: Any, result: Any, error: Exception | None, started: float) -> tuple[Events, Any]:
        items, tags = self.items, self.tags
        per_item = (time.perf_counter() - started) / len(items)
        for _ in items:  # the histogram is per item: each gets its share of the batch's time
            self.account(time.perf_counter() - per_item)
        if error is None and (not isinstance(result, (list, tuple)) or len(result) != len(items)):
            got = f"{len(result)} results" if isinstance(result, (list, tuple)) else repr(type(result))
            error = TypeError(
                f"{self.who}: process_batch() of {len(items)} items must return as many, got {got}"
            )
        if error is not None:
            failed = [
                self.fail(self._tagged(tag, one), error, "process_item", self.name)
                for one, tag in zip(items, tags, strict=True)
            ]
            return failed, self._several([])
        events: list[Any] = []
        outs: list[Any] = []
        for one, tag, got in zip(items, tags, result, strict=True):
            out = got
            if out is None:
                self.count("dropped")
                if tag is None and not self.writer.reports_drops:
                    continue
                out = DROPPED
            try:
                self.writer.check_picklable(out)
            except Exception as exc:
                error = self.unpicklable("a result of process_batch()", exc)
                events.append(self.fail(self._tagged(tag, one), error, "process_item", self.name))
                continue
            outs.append(self._tagged(tag, out))
        return events or None, self._several(outs)

    def _several(self, outs: list[Any]) -> Several | None:
        """What to put: the results (and the tombstones that came along), batched for a process hop."""
        outs += self.tombstones
        self.tombstones = []
        if self.batch > 1:
            batches = [batch for batch in map(self.hold, outs) if batch is not None]
            return Several(batches) if batches else None
        return Several(outs) if outs else None

    @staticmethod
    def _tagged(tag: Any, obj: Any) -> Any:
        return obj if tag is None else Tracked(tag, obj)

    def cut_short(self, item: Any, exc: BaseException) -> Events:
        return [
            self.fail(self._tagged(tag, one), exc, "process_item", self.name)
            for one, tag in zip(self.items, self.tags, strict=True)
        ]

    def done(self, outcome: BaseException | None) -> None:
        """Every item of the batch is done for its source (each failed one became a dead letter)."""
        for _ in range(self.taken):
            self.reader.task_done()
        self.items, self.tags, self.taken = [], [], 0


def takes_batches(stage: _StageMixin) -> bool:
    """Whether ``stage``'s class defines ``process_batch``."""
    return type(stage).process_batch is not _StageMixin.process_batch
