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

from ._consume import Consumer, Event, consume
from ._envelopes import Tracked
from ._queues import QueueReader
from ._support import short_repr

__all__ = ["Feeder", "SourceFeeder"]

logger = logging.getLogger("spoc.workers.patterns")

# What a source is told of an item the pipeline did not accept: nothing, it is given back.
_NOT_ACCEPTED = RuntimeError("the pipeline did not accept the item")


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

    A job source that acknowledges late (its reader's ``defer()`` gives a
    token) has each item put in as a :class:`Tracked` envelope tagged
    ``(tag, token)``, and is told when the item has left the pipeline,
    through :meth:`settle`. Any other source's item is done for it
    (``done(None)``) once the pipeline accepted it. An item taken while the
    pipeline stops is given back: left unacknowledged to a job source
    (delivered again), put back into a queue.

    Args:
        tag: what tells this feeder's items apart in the pipeline (its index there).
        *args: as for :class:`Feeder`.
    """

    def __init__(self, tag: int, *args: Any) -> None:
        super().__init__(*args)
        self.tag = tag
        self.reader: QueueReader | None = None  # the source's reader, once main() made it

    def main(self) -> None:
        """Take items from the source and feed them, until stopped."""
        consumer = _FeedConsumer(self)
        self.reader = consumer.reader
        consume(consumer)

    def settle(self, token: Any, error: BaseException | None) -> None:
        """A tracked item of this feeder's has left the pipeline: tell its source (any thread)."""
        reader = self.reader
        assert reader is not None  # the token came from it
        try:
            reader.settle(token, error)
        except Exception:
            logger.exception("%r: could not settle an item with its source", self.name)


class _FeedConsumer(Consumer):
    """A source feeder's steps of the consume loop: hand each item to the pipeline's intake.

    It counts nothing and reports nothing: an item it cannot read, or an
    intake that raises, ends the feeder (the exception is raised on).
    """

    def __init__(self, feeder: SourceFeeder) -> None:
        super().__init__(
            feeder,
            feeder.items,
            self._accept,
            None,
            phase="accept",
            subject="item",
            interrupted=_NOT_ACCEPTED,
        )
        self.feeder = feeder
        self.item: Any = None
        self.accepted = False

    def _accept(self, item: Any) -> bool:
        self.item, self.accepted = item, False
        feeder = self.feeder
        token = self.reader.defer()
        if token is None:
            self.accepted = feeder.accept(item, feeder)
            return self.accepted
        try:
            self.accepted = feeder.accept(Tracked((feeder.tag, token), item), feeder)
        finally:
            if not self.accepted:  # given back: its source delivers it again
                feeder.settle(token, _NOT_ACCEPTED)
        return self.accepted

    def unreadable(self, exc: Exception) -> Event:
        raise exc

    def handled(self, item: Any, result: Any, error: Exception | None, started: float) -> tuple[Event, Any]:
        if error is not None:
            raise error
        return None, None

    def done(self, outcome: BaseException | None) -> None:
        """Acknowledge an item the pipeline accepted; give back one it refused (or never took)."""
        if outcome is None and self.accepted:
            self.reader.done(None)
        else:
            self._give_back(self.item)

    def _give_back(self, item: Any) -> None:
        try:
            self.reader.give_back(item)
        except Exception:
            logger.error(
                "%r: the pipeline stopped before accepting item %s, and it could not go back to its source",
                self.feeder.name,
                short_repr(item),
            )
