"""RedisStream under faults: entries that are no jobs, and Redis going away under a worker.

The outage tests stop a redis-server of their own (``SHUTDOWN SAVE``) at a
chosen moment of the worker's loop and start it again on the same port with
its data, so the consumer group and its pending entries survive, as they do
across a real restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from redis_targets import GatedProcessor
from spoc.workers.redis import CONNECTION_ERRORS, LocalRedisServer, RedisStream
from targets import started, wait_for

JOIN = 10.0
WAIT = 20.0
LOGGER = "spoc.workers.redis"


def redis_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """What the Redis package logged at exactly ``level``."""
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the Redis package logged at WARNING or above."""
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def text(value: bytes) -> str:
    return value.decode()


@pytest.fixture
def stream(redis_url: str, stream_name: str) -> Iterator[RedisStream]:
    s = RedisStream(stream_name, url=redis_url, claim_idle=60)
    yield s
    s.delete()
    s.close()


# -- entries that are no jobs ------------------------------------------------------------------


def process_all(name: str, stream: RedisStream, jobs: list[str]) -> GatedProcessor:
    """Run a processor on ``stream`` until it has processed ``jobs`` and nothing is pending; stop it."""
    worker = GatedProcessor(name, stream)
    with started(worker, timeout=JOIN):
        wait_for(lambda: worker.jobs == jobs and stream.pending() == 0, WAIT)
    return worker


def test_an_entry_without_a_job_field_is_dead_lettered_with_its_fields_and_reported(
    stream: RedisStream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream.enqueue("ok-1")
    bad = text(stream.client().xadd(stream.stream, {"payload": "[1, 2]", "error": "the producer's own"}))
    stream.enqueue("ok-2")
    worker = process_all("no-job-field", stream, ["ok-1", "ok-2"])
    [dead] = stream.dead_letters()
    assert (dead.id, dead.job, dead.data, dead.deliveries) == (bad, None, b"", 1)
    assert "no 'job' field" in dead.error
    assert dead.fields == {b"payload": b"[1, 2]", b"error": b"the producer's own"}
    # The shape of every dead letter: its own fields, plus why, kept apart from a field of the same name.
    [(_, raw)] = stream.client().xrange(stream.dead_letter_stream)
    assert set(raw) == {b"id", b"error", b"deliveries", b"consumer", b"payload", b"original:error"}
    [event] = worker.errors("dead-letter")
    assert bad in str(event["exception"]) and "no 'job' field" in str(event["exception"])
    [record] = reports(caplog)
    assert record.levelno == logging.ERROR and bad in record.getMessage()


class RejectingCodec:
    """A codec whose ``loads`` fails with an error of its own."""

    def dumps(self, job: Any) -> bytes:
        return str(job).encode()

    def loads(self, data: bytes) -> Any:
        if data.startswith(b"bad"):
            raise LookupError(f"no job type {data!r}")
        return data.decode()


@pytest.mark.parametrize(
    "case",
    [
        ("json", b"{not json", "JSONDecodeError"),
        ("pickle", b"not a pickle", "UnpicklingError"),
        (RejectingCodec(), b"bad-type", "LookupError: no job type"),
    ],
    ids=["json", "pickle", "own-codec"],
)
@pytest.mark.no_processes
def test_an_entry_the_codec_cannot_decode_is_dead_lettered_and_reported(
    redis_url: str, stream_name: str, caplog: pytest.LogCaptureFixture, case: tuple[Any, bytes, str]
) -> None:
    codec, bad, error = case  # the codec, an entry's job field it cannot decode, the error it raises
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_url, claim_idle=60, codec=codec)
    try:
        stream.enqueue("ok-1")
        bad_id = text(stream.client().xadd(stream.stream, {"job": bad, "trace": "t-1"}))
        stream.enqueue("ok-2")
        worker = process_all("decoder", stream, ["ok-1", "ok-2"])
        [dead] = stream.dead_letters()
        assert (dead.id, dead.job, dead.data, dead.deliveries) == (bad_id, None, bad, 1)
        assert dead.error.startswith("cannot be decoded: ") and error in dead.error
        assert dead.fields == {b"trace": b"t-1"}
        [event] = worker.errors("dead-letter")
        cause = event["exception"].__cause__  # the codec's own error
        assert bad_id in str(event["exception"]) and error in f"{type(cause).__name__}: {cause}"
        [record] = reports(caplog)
        assert record.levelno == logging.ERROR and bad_id in record.getMessage()
    finally:
        stream.delete()
        stream.close()


# -- Redis going away --------------------------------------------------------------------------


def blocked_in_xreadgroup(admin: RedisStream) -> bool:
    """Whether a client waits in a blocking ``XREADGROUP``: a worker idle on the stream."""
    return any(
        c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in admin.client().client_list()
    )


def assert_one_outage(worker: GatedProcessor, caplog: pytest.LogCaptureFixture, first_call: str) -> None:
    """One ``"error"`` event, one WARNING, one INFO when it ended: for the whole outage, not per retry."""
    [outage] = worker.errors("redis")
    assert isinstance(outage["exception"], CONNECTION_ERRORS)
    [record] = reports(caplog)
    assert record.levelno == logging.WARNING and first_call in record.getMessage()
    [back] = [r for r in redis_records(caplog, logging.INFO) if "answers again" in r.getMessage()]
    assert "failed attempt" in back.getMessage()


def test_an_outage_first_met_by_an_acknowledgement_is_reported_once_and_the_ack_lands(
    redis_server: LocalRedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_server.url, claim_idle=60, connect_timeout=1)
    admin = RedisStream(stream_name, url=redis_server.url)
    admin.enqueue_many(["a", "hold", "b"])
    worker = GatedProcessor("acknowledger", stream, hold="hold")
    worker.start()
    try:
        assert worker.holding.wait(WAIT)  # "a" done, "hold" in hand, "b" read
        admin.close()
        redis_server.stop()
        worker.gate.set()  # process_job returns: "b" is done next, then the worker's next Redis call
        # acknowledges the batch of three (the acknowledgements of a batch go with the next read)
        wait_for(lambda: worker.errors("redis"), WAIT)
        redis_server.start()
        wait_for(lambda: len(worker.jobs) == 3 and admin.pending() == 0, WAIT)
    finally:
        worker.gate.set()
        worker.stop()
        assert worker.join(JOIN)
        admin.close()
        stream.close()
    assert worker.jobs == ["a", "hold", "b"]  # each once: the acknowledgements landed, nothing came back
    assert_one_outage(worker, caplog, "acknowledging 3 done")  # the batch of three, in one call


def test_an_outage_first_met_by_the_read_after_a_job_is_reported_once(
    redis_server: LocalRedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_server.url, claim_idle=60, connect_timeout=1)
    admin = RedisStream(stream_name, url=redis_server.url)
    admin.enqueue_many(["a", "b"])
    worker = GatedProcessor("reader", stream)
    worker.start()
    try:
        wait_for(lambda: worker.jobs == ["a", "b"] and admin.pending() == 0, WAIT)
        wait_for(lambda: blocked_in_xreadgroup(admin), WAIT)  # both acknowledged, waiting for more
        admin.close()
        redis_server.stop()
        wait_for(lambda: worker.errors("redis"), WAIT)
        redis_server.start()
        admin.enqueue("c")
        wait_for(lambda: len(worker.jobs) == 3 and admin.pending() == 0, WAIT)
    finally:
        worker.stop()
        assert worker.join(JOIN)
        admin.close()
        stream.close()
    assert worker.jobs == ["a", "b", "c"]
    assert_one_outage(worker, caplog, "read jobs")


def test_a_worker_stopped_in_an_outage_leaves_its_jobs_pending_for_another(
    redis_server: LocalRedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_server.url, claim_idle=60, connect_timeout=1)
    admin = RedisStream(stream_name, url=redis_server.url, claim_idle=0.2)
    ids = admin.enqueue_many(["hold", "b", "c"])
    worker = GatedProcessor("stopped", stream, hold="hold")
    survivor = GatedProcessor("survivor", admin)
    worker.start()
    try:
        assert worker.holding.wait(WAIT)  # "hold" in hand, "b" and "c" read but not started
        redis_server.stop()
        worker.stop()
        worker.gate.set()  # processed, but Redis is away: no acknowledgement, no hand-back
        assert worker.join(JOIN)
        [outage] = worker.errors("redis")
        assert isinstance(outage["exception"], CONNECTION_ERRORS)
        errors = [r.getMessage() for r in redis_records(caplog, logging.ERROR)]
        assert any(ids[0] in m and "not acknowledged" in m for m in errors)  # named, not forgotten
        assert any("2 job(s)" in m and "stay pending" in m for m in errors)
        redis_server.start()
        pending = admin.client().xpending_range(admin.stream, admin.group, "-", "+", 10)
        assert sorted(text(p["message_id"]) for p in pending) == sorted(ids)
        survivor.start()  # takes them over once claim_idle has passed
        wait_for(lambda: len(survivor.jobs) == 3 and admin.pending() == 0, WAIT)
    finally:
        worker.gate.set()
        worker.stop()
        survivor.stop()
        assert worker.join(JOIN) and survivor.join(JOIN)
        admin.close()
        stream.close()
    assert sorted(survivor.jobs) == ["b", "c", "hold"]


@pytest.mark.no_processes
def test_a_pending_entry_deleted_from_the_stream_is_logged_when_taken_over(
    redis_url: str, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_url, claim_idle=0.1)
    try:
        gone = stream.enqueue_many(["gone", "kept"])[0]
        stream.ensure_group()
        # A consumer that read both and died; then the first was deleted (maxlen trims the same way).
        stream.client().xreadgroup(stream.group, "dead-consumer", {stream.stream: ">"}, count=2)
        stream.client().xdel(stream.stream, gone)
        process_all("taker", stream, ["kept"])
        [record] = reports(caplog)
        assert (
            record.levelno == logging.WARNING
            and gone in record.getMessage()
            and "deleted" in record.getMessage()
        )
        assert stream.dead_letters() == []  # nothing left of it to keep
    finally:
        stream.delete()
        stream.close()
