"""``RedisStream``: one Redis stream and consumer group, as a job source and as a sink."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry
from spoc.workers._checks import check_count, check_number
from spoc.workers._deprecation import renamed

from ._codec import Codec, codec_for
from ._common import CONNECTION_ERRORS, JOB_FIELD, original_fields, text
from ._reader import RedisStreamReader

if TYPE_CHECKING:
    from prometheus_client import Metric

__all__ = ["METRICS_TIMEOUT", "DeadJob", "RedisStream"]

logger = logging.getLogger("spoc.workers.redis")

METRICS_TIMEOUT = 0.5
"""Seconds :meth:`RedisStream.collect_metrics` waits for Redis (to connect, then for the reply)."""


@dataclass(frozen=True)
class DeadJob:
    """A job that went to the dead-letter stream.

    Attributes:
        id: its id in the job stream.
        job: the decoded job (None when it could not be decoded).
        data: the job's bytes as they were in the stream.
        error: the last error seen for it (type and message), or why it went there.
        deliveries: how many times it was delivered.
        dead_id: its id in the dead-letter stream.
        fields: the entry's other fields (all but ``job``), as the producer wrote them.
    """

    id: str
    job: Any
    data: bytes
    error: str
    deliveries: int
    dead_id: str
    fields: dict[bytes, bytes] = field(default_factory=dict)


class RedisStream:
    """A Redis stream read by a consumer group: where jobs wait until a worker takes them.

    Give it as the ``job_queue`` of a :class:`~spoc.workers.patterns.JobProcessor`
    or :class:`~spoc.workers.patterns.ProcessJobProcessor` (or as the
    ``input_queue`` of a :class:`~spoc.workers.patterns.StageWorker`), on as
    many machines as you like: each job is delivered to one worker of the
    group. Give it as a stage's ``output_queue`` and results are added to it.

    Delivery is *at least once*:

    * a job is acknowledged (``XACK``) only after ``process_job`` returned;
    * a job whose ``process_job`` raised stays pending and is delivered again
      after ``claim_idle`` seconds, as are the jobs of a worker that died;
      a live consumer takes them over with ``XAUTOCLAIM``;
    * a job delivered more than ``max_deliveries`` times goes to the
      dead-letter stream with its last error (:meth:`dead_letters`), and so,
      at once, does an entry with no ``job`` field or one the codec cannot
      decode;
    * a worker that stops finishes the job in hand and hands the jobs it had
      read but not started back to the stream at once.

    No connection is made until the object is used, and it can be pickled
    to a process worker: each process makes its own connections.

    Args:
        stream: the stream's key.
        url: the Redis server, e.g. ``redis://host:6379/0``.
        group: the consumer group (created, with the stream, when missing).
        block: the longest single blocking read, in seconds: ``stop()`` waits
            at most this long for a worker idle on the stream (default 0.1).
        batch: entries read at a time (default 10).
        claim_idle: seconds a delivered job may stay unacknowledged before
            another consumer takes it over (default 30): longer than your
            longest job, or a slow job is delivered twice.
        max_deliveries: deliveries before a job goes to the dead-letter stream.
        dead_letter_stream: its key (default ``"<stream>:dead"``).
        codec: ``"json"`` (default), ``"pickle"``, or an object with
            ``dumps(job) -> bytes`` and ``loads(bytes)``.
        maxlen: trim the stream to about this many entries when adding (None: never).
        connect_timeout: seconds for a connection attempt (default 5).

    Raises:
        TypeError, ValueError: an argument of the wrong type or out of range.
    """

    def __init__(
        self,
        stream: str,
        *,
        url: str = "redis://localhost:6379/0",
        group: str = "spoc-workers",
        block: float = 0.1,
        batch: int = 10,
        claim_idle: float = 30.0,
        max_deliveries: int = 5,
        dead_letter_stream: str | None = None,
        codec: str | Codec = "json",
        maxlen: int | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(stream, str) or not stream:
            raise TypeError(f"RedisStream: stream must be a non-empty str, got {stream!r}")
        owner = f"RedisStream {stream!r}"
        for what, value in (("url", url), ("group", group)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{owner}: {what} must be a non-empty str, got {value!r}")
        self.stream = stream
        self.url = url
        self.group = group
        self.block = check_number(owner, "block", block, minimum=0.001)
        self.batch = check_count(owner, "batch", batch)
        self.claim_idle = check_number(owner, "claim_idle", claim_idle, strict=True)
        self.max_deliveries = check_count(owner, "max_deliveries", max_deliveries)
        self.dead_letter_stream = dead_letter_stream or f"{stream}:dead"
        self.errors_key = f"{stream}:errors:{group}"
        self.codec = codec_for(owner, codec)
        self.maxlen = None if maxlen is None else check_count(owner, "maxlen", maxlen)
        self.connect_timeout = check_number(owner, "connect_timeout", connect_timeout, strict=True)
        self._local = _Connections()

    def __repr__(self) -> str:
        return f"RedisStream({self.stream!r}, url={self.url!r}, group={self.group!r})"

    # Connections stay in the process (and, for asyncio, the loop) that made them.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_local"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = _Connections()

    # -- connections ----------------------------------------------------------------------

    def client(self) -> Any:
        """This process's :class:`redis.Redis` client (made on first use; thread-safe)."""
        return self._local.sync(self)

    def async_client(self) -> Any:
        """A :class:`redis.asyncio.Redis` client for the running event loop (one per loop)."""
        return self._local.for_loop(self)

    def close(self) -> None:
        """Close this process's sync clients, the metrics' one too (a later use opens a new one)."""
        self._local.close_sync()

    async def aclose(self) -> None:
        """Close the running loop's async client; call it in an ``async def teardown``.

        An async client left open when its loop closes leaves its sockets to
        the garbage collector (``ResourceWarning``).
        """
        client = self._local.pop_loop_client()
        if client is not None:
            await client.aclose()

    def _options(self) -> dict[str, Any]:
        # The socket timeout must outlast the longest blocking read.
        return {
            "protocol": 2,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.connect_timeout + self.block,
            "health_check_interval": 30,
        }

    # -- the group ------------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless they exist; safe to call anywhere."""
        try:
            self.client().xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- adding jobs ----------------------------------------------------------------------

    def enqueue(self, job: Any) -> str:
        """Add one job (``XADD``); returns its id. Connection errors are raised to the caller."""
        data = self.codec.dumps(job)
        entry_id = self.client().xadd(self.stream, {JOB_FIELD: data}, maxlen=self.maxlen, approximate=True)
        return text(entry_id)

    def enqueue_many(self, jobs: Iterable[Any], *, chunk: int = 500) -> list[str]:
        """Add many jobs, ``chunk`` per round trip; returns their ids in order."""
        ids: list[str] = []
        batch: list[bytes] = []
        for job in jobs:
            batch.append(self.codec.dumps(job))
            if len(batch) >= chunk:
                ids += self._add_all(batch)
                batch = []
        if batch:
            ids += self._add_all(batch)
        return ids

    def _add_all(self, encoded: list[bytes]) -> list[str]:
        pipe = self.client().pipeline(transaction=False)
        for data in encoded:
            pipe.xadd(self.stream, {JOB_FIELD: data}, maxlen=self.maxlen, approximate=True)
        return [text(i) for i in pipe.execute()]

    async def aenqueue(self, job: Any) -> str:
        """``await`` version of :meth:`enqueue`, on :mod:`redis.asyncio`."""
        data = self.codec.dumps(job)
        client = self.async_client()
        entry_id = await client.xadd(self.stream, {JOB_FIELD: data}, maxlen=self.maxlen, approximate=True)
        return text(entry_id)

    async def aenqueue_many(self, jobs: Iterable[Any], *, chunk: int = 500) -> list[str]:
        """``await`` version of :meth:`enqueue_many`."""
        client = self.async_client()
        ids: list[str] = []
        encoded = [self.codec.dumps(job) for job in jobs]
        for start in range(0, len(encoded), chunk):
            pipe = client.pipeline(transaction=False)
            for data in encoded[start : start + chunk]:
                pipe.xadd(self.stream, {JOB_FIELD: data}, maxlen=self.maxlen, approximate=True)
            ids += [text(i) for i in await pipe.execute()]
        return ids

    # A stage's output: the pipeline's writer calls put(item, True, timeout).
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item`` as a job, for a stage whose ``output_queue`` this is.

        When Redis cannot be reached, waits up to ``timeout`` seconds (0 when
        not ``block``) and raises :class:`queue.Full`, as a full queue would:
        a stage worker then keeps trying (back-pressure) instead of failing.
        """
        try:
            self.enqueue(item)
        except CONNECTION_ERRORS as exc:
            logger.warning("%r: cannot add a job (%r); retrying", self, exc)
            if block and timeout:
                time.sleep(timeout)  # as a full queue would make the caller wait
            raise queue.Full from exc

    def put_nowait(self, item: Any) -> None:
        """:meth:`put` without waiting."""
        self.put(item, block=False)

    # -- a worker's reader ------------------------------------------------------------------

    def spoc_reader(self) -> RedisStreamReader:
        """The reader a job processor or stage uses (called by spoc-workers-patterns)."""
        return RedisStreamReader(self)

    # -- inspection -------------------------------------------------------------------------

    def length(self) -> int:
        """Entries in the stream (``XLEN``), acknowledged ones included until trimmed."""
        return int(self.client().xlen(self.stream))

    def pending(self) -> int:
        """Jobs delivered to a consumer of the group and not acknowledged yet."""
        try:
            summary = self.client().xpending(self.stream, self.group)
        except redis.ResponseError:  # no group yet
            return 0
        return int(summary["pending"])

    def collect_metrics(self) -> Iterable[Metric]:
        """The stream's figures as Prometheus metric families, for a server's ``/metrics``.

        Gauges labelled ``stream`` (and ``group``), read at each call in one
        round trip (``XLEN``, ``XINFO GROUPS``):

        * ``spoc_redis_stream_length``: entries in the stream (``XLEN``);
        * ``spoc_redis_stream_pending``: entries delivered to a consumer of
          the group and not acknowledged yet (the pending entries list, as
          ``XPENDING`` counts it);
        * ``spoc_redis_stream_lag``: entries not delivered to the group yet
          (``XINFO GROUPS``' ``lag``, Redis 7+). When Redis cannot tell it
          (before Redis 7, or after entries were deleted) it is worked out
          where that is exact (nothing delivered yet, or everything: one
          more round trip, ``XREVRANGE``), else left out.

        Without the group, only the length is given. It never raises and
        never waits long: it uses a client of its own that gives up after
        half a second (or ``connect_timeout``, if shorter), without
        retrying. When Redis cannot be reached, or answers
        with an error, it returns nothing and logs a warning, once per
        outage. It needs prometheus_client (the ``http`` extra of
        spoc-workers-core), imported here only.
        """
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 (an optional dependency)

        try:
            length, group = self._figures()
        except Exception as exc:
            self._local.metrics_failed(self, exc)
            return []
        self._local.metrics_answered(self)

        def gauge(name: str, documentation: str, value: float, group_too: bool = True) -> GaugeMetricFamily:
            names, values = (
                (["stream", "group"], [self.stream, self.group]) if group_too else (["stream"], [self.stream])
            )
            family = GaugeMetricFamily(name, documentation, labels=names)
            family.add_metric(values, float(value))
            return family

        families = [gauge("spoc_redis_stream_length", "Entries in the Redis stream (XLEN).", length, False)]
        if group is not None:
            pending, lag = group
            families.append(
                gauge(
                    "spoc_redis_stream_pending",
                    "Entries delivered to a consumer of the group and not acknowledged yet (XPENDING).",
                    pending,
                )
            )
            if lag is not None:
                families.append(
                    gauge(
                        "spoc_redis_stream_lag", "Entries of the stream not delivered to the group yet.", lag
                    )
                )
        return families

    def _figures(self) -> tuple[int, tuple[int, int | None] | None]:
        """``(length, (pending, lag) or None without the group)``, on the metrics' client."""
        client = self._local.metrics(self)
        pipe = client.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xinfo_groups(self.stream)
        length_reply, groups_reply = pipe.execute(raise_on_error=False)
        if isinstance(length_reply, Exception):
            raise length_reply
        length = int(length_reply)
        if isinstance(groups_reply, redis.ResponseError) and "no such key" in str(groups_reply).lower():
            return length, None  # no stream, so no group either
        if isinstance(groups_reply, Exception):
            raise groups_reply
        name = self.group.encode()
        for info in groups_reply:
            if info.get("name") in (name, self.group):
                lag = info.get("lag")
                if lag is None:
                    lag = _lag_from_ids(info.get("last-delivered-id"), length, lambda: _last_id(client, self))
                return length, (int(info["pending"]), None if lag is None else int(lag))
        return length, None

    def dead_letters(self, count: int = 1000) -> list[DeadJob]:
        """The oldest ``count`` entries of the dead-letter stream (a Redis call each time)."""
        entries = self.client().xrange(self.dead_letter_stream, count=count)
        dead: list[DeadJob] = []
        for dead_id, fields in entries:
            data = fields.get(JOB_FIELD, b"")
            job = None
            if JOB_FIELD in fields:
                try:
                    job = self.codec.loads(data)
                except Exception:
                    pass  # why it is here
            dead.append(
                DeadJob(
                    id=text(fields.get(b"id", b"")),
                    job=job,
                    data=data,
                    error=text(fields.get(b"error", b"")),
                    deliveries=int(fields.get(b"deliveries", 0)),
                    dead_id=text(dead_id),
                    fields=original_fields(fields),
                )
            )
        return dead

    def dead_jobs(self, count: int = 1000) -> list[DeadJob]:
        """Deprecated spelling of :meth:`dead_letters` (kept for one release)."""
        renamed("RedisStream.dead_jobs()", "RedisStream.dead_letters()")
        return self.dead_letters(count)

    def delete(self) -> None:
        """Delete the stream, its dead-letter stream and its error notes (tests, resets)."""
        self.client().delete(self.stream, self.dead_letter_stream, self.errors_key)


def _stream_id(value: Any) -> tuple[int, int]:
    """A stream entry id (``b"1700000000000-3"``) as ``(milliseconds, sequence)``, to compare."""
    milliseconds, _, sequence = text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def _last_id(client: Any, stream: RedisStream) -> Any:
    """The id of the stream's last entry, or None when it is empty."""
    entries = client.xrevrange(stream.stream, count=1)
    return entries[0][0] if entries else None


def _lag_from_ids(last_delivered: Any, length: int, last_entry: Callable[[], Any]) -> int | None:
    """A group's lag where Redis does not tell it, when it is exact; else None.

    The undelivered entries are those after the group's last delivered id:
    every entry when nothing was delivered yet, none when the last delivered
    id is at or after the stream's last entry (``last_entry()``, called only
    then). Between the two, counting them would mean reading them: unknown.
    """
    if last_delivered is None:
        return None
    delivered = _stream_id(last_delivered)
    if delivered == (0, 0) or length == 0:
        return length
    last = last_entry()
    if last is None or _stream_id(last) <= delivered:
        return 0
    return None


class _Connections:
    """The clients of one process: one sync client, one async client per event loop, and
    one sync client for the metrics (short timeouts, no retries)."""

    def __init__(self) -> None:
        self._forget()
        _ALL_CONNECTIONS.add(self)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._sync: Any = None
        self._metrics: Any = None
        self._metrics_down = False
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
            self._forget()

    def sync(self, stream: RedisStream) -> Any:
        with self._lock:
            self._check_pid()
            if self._sync is None:
                self._sync = redis.Redis.from_url(stream.url, **stream._options())
            return self._sync

    def metrics(self, stream: RedisStream) -> Any:
        with self._lock:
            self._check_pid()
            if self._metrics is None:
                timeout = min(stream.connect_timeout, METRICS_TIMEOUT)
                self._metrics = redis.Redis.from_url(
                    stream.url,
                    protocol=2,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),  # one try: the next scrape is the retry
                )
            return self._metrics

    def metrics_failed(self, stream: RedisStream, exc: BaseException) -> None:
        """A metrics read failed: the first failure of an outage is logged."""
        with self._lock:
            first, self._metrics_down = not self._metrics_down, True
        if first:
            logger.warning(
                "%r: cannot read the stream's metrics (%r); left out until Redis answers", stream, exc
            )

    def metrics_answered(self, stream: RedisStream) -> None:
        """A metrics read got through: the end of an outage, if there was one, is logged."""
        with self._lock:
            ended, self._metrics_down = self._metrics_down, False
        if ended:
            logger.info("%r: the stream's metrics can be read again", stream)

    def close_sync(self) -> None:
        with self._lock:
            clients, self._sync, self._metrics = (self._sync, self._metrics), None, None
        if self._pid == os.getpid():
            for client in clients:
                if client is not None:
                    client.close()

    def pop_loop_client(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check_pid()
            return self._by_loop.pop(loop, None)

    def for_loop(self, stream: RedisStream) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._check_pid()
            client = self._by_loop.get(loop)
            if client is None:
                client = redis.asyncio.Redis.from_url(stream.url, **stream._options())
                self._by_loop[loop] = client
            return client


_ALL_CONNECTIONS: weakref.WeakSet[_Connections] = weakref.WeakSet()


def _forget_connections_in_child() -> None:
    # A forked child inherits the lock as it was at the fork: held, if a thread of the
    # parent was opening a client then, and nobody in the child would ever release it.
    for connections in list(_ALL_CONNECTIONS):
        connections._forget()


os.register_at_fork(after_in_child=_forget_connections_in_child)
