"""``RedisStream.collect_metrics()``: the stream's length, pending entries and lag, for ``/metrics``.

Exact figures against a real redis-server, and, while Redis is down or does
not answer, a quick return with nothing in it instead of an exception.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("prometheus_client", reason="the http extra of spoc-workers-core is not installed")

from spoc.workers.redis import LocalRedisServer, RedisStream
from spoc.workers.redis._stream import METRICS_TIMEOUT, _lag_from_ids

LOGGER = "spoc.workers.redis"
QUICK = 3.0  # seconds: a failed scrape takes about METRICS_TIMEOUT at most; a wide bound

Figures = dict[tuple[str, tuple[tuple[str, str], ...]], float]

pytestmark = pytest.mark.no_processes


def figures(stream: RedisStream) -> Figures:
    """``(family name, sorted labels) -> value`` of every sample ``collect_metrics()`` gives."""
    found: Figures = {}
    for family in stream.collect_metrics():
        assert family.type == "gauge"
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found
            found[key] = sample.value
    return found


def expected(stream: RedisStream, length: int, pending: int | None = None, lag: int | None = None) -> Figures:
    """The figures of ``stream``: its length, and its group's pending entries and lag when given."""
    both = (("group", stream.group), ("stream", stream.stream))
    want: Figures = {("spoc_redis_stream_length", (("stream", stream.stream),)): float(length)}
    if pending is not None:
        want["spoc_redis_stream_pending", both] = float(pending)
    if lag is not None:
        want["spoc_redis_stream_lag", both] = float(lag)
    return want


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


@pytest.fixture
def stream(redis_url: str, stream_name: str) -> Iterator[RedisStream]:
    s = RedisStream(stream_name, url=redis_url, group="billing")
    yield s
    s.delete()
    s.close()


def read(stream: RedisStream, count: int) -> list[bytes]:
    """Deliver ``count`` entries to a consumer of the group, as a worker's read would; their ids."""
    reply = stream.client().xreadgroup(stream.group, "consumer-1", {stream.stream: ">"}, count=count)
    return [entry_id for _, entries in reply for entry_id, _ in entries]


def test_the_figures_are_exact_for_known_pending_and_undelivered_entries(stream: RedisStream) -> None:
    assert figures(stream) == expected(stream, 0)  # no stream yet: no group either
    ids = stream.enqueue_many(range(7))
    assert figures(stream) == expected(stream, 7)  # a stream without the group
    stream.ensure_group()
    assert figures(stream) == expected(stream, 7, pending=0, lag=7)
    delivered = read(stream, 4)
    stream.client().xack(stream.stream, stream.group, delivered[0])
    assert figures(stream) == expected(stream, 7, pending=3, lag=3)
    assert stream.pending() == 3  # what XPENDING says
    read(stream, 10)
    assert figures(stream) == expected(stream, 7, pending=6, lag=0)
    stream.enqueue("one more")
    assert figures(stream) == expected(stream, 8, pending=6, lag=1)
    assert len(ids) == 7


def test_a_lag_redis_cannot_tell_is_left_out_unless_it_is_exact(stream: RedisStream) -> None:
    ids = stream.enqueue_many(range(5))
    stream.ensure_group()
    read(stream, 2)
    stream.client().xdel(stream.stream, ids[3])  # Redis no longer knows the group's lag
    assert stream.client().xinfo_groups(stream.stream)[0]["lag"] is None
    assert figures(stream) == expected(stream, 4, pending=2)  # 1 or 2 undelivered? not said
    read(stream, 10)
    assert figures(stream) == expected(stream, 4, pending=4, lag=0)


def test_the_lag_is_worked_out_from_the_ids_where_that_is_exact() -> None:
    def no_call() -> bytes:
        raise AssertionError("the last entry was not needed")

    assert _lag_from_ids(b"0-0", 5, no_call) == 5  # nothing delivered yet: every entry
    assert _lag_from_ids(b"10-1", 0, no_call) == 0  # an empty stream
    assert _lag_from_ids(b"10-1", 3, lambda: b"10-1") == 0  # the last entry was delivered
    assert _lag_from_ids(b"10-1", 3, lambda: b"9-7") == 0  # ... and then trimmed away
    assert _lag_from_ids(b"10-1", 3, lambda: None) == 0
    assert _lag_from_ids(b"10-1", 3, lambda: b"10-2") is None  # some are after it: how many?
    assert _lag_from_ids(b"9-9", 3, lambda: b"10-0") is None
    assert _lag_from_ids(None, 3, no_call) is None


def timed_figures(stream: RedisStream) -> tuple[float, Figures]:
    began = time.monotonic()
    found = figures(stream)
    return time.monotonic() - began, found


def test_during_an_outage_it_returns_nothing_at_once_and_logs_once(
    redis_server: LocalRedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_server.url)
    try:
        stream.enqueue_many(range(3))
        stream.ensure_group()
        assert figures(stream) == expected(stream, 3, pending=0, lag=3)
        redis_server.stop()
        for _ in range(3):
            took, found = timed_figures(stream)
            assert found == {}
            assert took < QUICK
        [warning] = records(caplog, logging.WARNING)  # once for the outage, not once a scrape
        assert stream_name in warning.getMessage() and "metrics" in warning.getMessage()
        assert records(caplog, logging.INFO) == []
        redis_server.start()
        assert figures(stream) == expected(stream, 3, pending=0, lag=3)  # the data survived
        [back] = records(caplog, logging.INFO)
        assert stream_name in back.getMessage()
        redis_server.stop()  # a second outage is a new one: logged again
        assert figures(stream) == {}
        assert len(records(caplog, logging.WARNING)) == 2
    finally:
        stream.close()


def test_a_redis_that_does_not_answer_costs_one_short_timeout(stream_name: str) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        stream = RedisStream(stream_name, url=f"redis://127.0.0.1:{port}/0")
        try:
            took, found = timed_figures(stream)
        finally:
            stream.close()
    assert found == {}
    assert METRICS_TIMEOUT * 0.9 <= took < QUICK  # it waited for the reply, once, then gave up
