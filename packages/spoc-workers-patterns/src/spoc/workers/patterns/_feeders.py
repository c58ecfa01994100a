"""Feeders: the background threads of :meth:`Pipeline.feed` and :meth:`Pipeline.feed_from`.

A feeder hands each item to the pipeline's ``accept(item, feeder)``, which
puts it into the first queue (waiting while it is full) and says False once
the pipeline refuses input; a finite feed then closes the input with
``close_input(feeder)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from spoc.workers import ThreadWorker

from ._queues import QueueReader, reader_for
from ._support import short_repr

__all__ = ["Feeder", "SourceFeeder"]

logger = logging.getLogger("spoc.workers.patterns")


class Feeder(ThreadWorker):
    """Puts the items of an iterable into a pipeline, then (optionally) closes its input.

    Args:
        name: the feeder's name.
        items: the iterable.
        accept: the pipeline's intake: ``accept(item, feeder)``, False when
            the pipeline refuses input (the feeder then ends).
        close_input: ``close_input(feeder)``, called after the last item
            when ``close`` is true.
        close: close the input after the last item.
    """

    def __init__(
        self,
        name: str,
        items: Iterable[Any],
        accept: Callable[[Any, Feeder], bool],
        close_input: Callable[[Feeder], object],
        close: bool,
    ) -> None:
        super().__init__(name)
        self.items = items
        self.accept = accept
        self.close_input = close_input
        self.close_after = close

    def main(self) -> None:
        """Feed every item, until the pipeline refuses one or the feeder is stopped."""
        try:
            for item in self.items:
                if not self.is_running or not self.accept(item, self):
                    return
        except Exception:
            logger.exception("%r: the iterable given to feed() raised; the input is closed", self.name)
        if self.close_after and self.is_running:
            self.close_input(self)


class SourceFeeder(Feeder):
    """Takes items from a queue or job source until stopped and puts them into a pipeline.

    A job source's item is acknowledged (``done(None)``) once the pipeline
    accepted it; one taken while the pipeline stops is given back: left
    unacknowledged to a job source (delivered again), put back into a queue.
    """

    def main(self) -> None:
        """Take items from the source and feed them, until stopped."""
        reader = reader_for(self.items)
        disarm = reader.arm(self)
        try:
            while self.is_running:
                got, item = reader.get(self)
                if not got:
                    continue
                accepted = False
                try:
                    accepted = self.accept(item, self)
                finally:
                    if accepted:
                        reader.done(None)
                    else:
                        self._give_back(reader, item)
        finally:
            disarm()

    def _give_back(self, reader: QueueReader, item: Any) -> None:
        try:
            reader.give_back(item)
        except Exception:
            logger.error(
                "%r: the pipeline stopped before accepting item %s, and it could not go back to its source",
                self.name,
                short_repr(item),
            )
