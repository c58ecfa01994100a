"""A Server's HTTP probes and metrics while the Redis its job processor reads is down.

Liveness must not depend on Redis (restarting the pod would not bring Redis
back: a failing liveness probe would only cause restart storms), and a
scrape must not hang on it; once Redis is back, jobs flow again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the http extra of spoc-workers-core is not installed")

from prometheus_client.parser import text_string_to_metric_families

from ops_targets import get_json, request
from redis_targets import CountingProcessor, seen
from spoc.workers import Server
from spoc.workers.redis import LocalRedisServer, RedisStream
from targets import wait_for

WAIT = 30.0
SCRAPE_BOUND = 2.0  # seconds: "within a second or two", whatever Redis does
RETRIES = 3  # failed reads the worker retries before the outage ends, at the least
LOGGER = "spoc.workers.redis"


class MeteredProcessor(CountingProcessor):
    """A counting processor whose ``/metrics`` families are its stream's."""

    def collect_metrics(self) -> Any:
        return self.job_queue.collect_metrics()


def scrape(server: Server) -> tuple[float, dict[str, Any]]:
    """GET /metrics: (seconds it took, family name -> family); it must answer 200."""
    began = time.monotonic()
    status, _, body = request(server, "/metrics")
    took = time.monotonic() - began
    assert status == 200
    return took, {family.name: family for family in text_string_to_metric_families(body.decode())}


def stream_figures(families: dict[str, Any]) -> dict[str, float]:
    """The RedisStream gauges of the worker ``consumer``: name -> value."""
    return {
        family.name: sample.value
        for family in families.values()
        if family.name.startswith("spoc_redis_stream_")
        for sample in family.samples
        if sample.labels.get("worker") == "consumer"
    }


def outage_met(worker: CountingProcessor) -> bool:
    """Whether the worker reported the outage (its ``"error"`` event, phase ``"redis"``)."""
    return any(kind == "error" and data.get("phase") == "redis" for kind, data in worker.events)


def retries(caplog: pytest.LogCaptureFixture) -> int:
    """The worker's failed retries so far, as its reader logs them (DEBUG)."""
    return sum(1 for r in caplog.records if r.name == LOGGER and "still failing" in r.getMessage())


@pytest.mark.no_processes
def test_probes_answer_through_a_redis_outage_and_jobs_flow_again_after_it(
    redis_server: LocalRedisServer, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    stream = RedisStream(stream_name, url=redis_server.url, claim_idle=60, connect_timeout=1)
    admin = RedisStream(stream_name, url=redis_server.url)
    worker = MeteredProcessor("consumer", stream)
    slowest = 0.0
    try:
        with Server("outage", http="127.0.0.1:0") as server:
            server.add_worker(worker)
            server.start()
            admin.enqueue("before")
            wait_for(lambda: seen(admin) == {"before": 1} and admin.pending() == 0, WAIT)
            took, families = scrape(server)
            assert stream_figures(families) == {
                "spoc_redis_stream_length": 1.0,
                "spoc_redis_stream_pending": 0.0,
                "spoc_redis_stream_lag": 0.0,
            }

            admin.close()
            redis_server.stop()
            rounds = 0
            deadline = time.monotonic() + WAIT
            while not (outage_met(worker) and retries(caplog) >= RETRIES):
                assert time.monotonic() < deadline, "the worker never met the outage"
                alive = get_json(server, "/healthz")
                assert alive[0] == 200 and alive[1]["alive"] is True, alive
                ready = get_json(server, "/readyz")
                assert ready[0] == 200, ready  # the worker keeps RUNNING: it waits for Redis
                took, families = scrape(server)
                slowest = max(slowest, took)
                assert took < SCRAPE_BOUND
                assert stream_figures(families) == {}  # left out, not made up
                assert "spoc_worker_up" in families  # the rest of the scrape is all there
                rounds += 1
            assert server.status()[0]["state"] == "running"
            assert server.status()[0]["restarts"] == 0

            redis_server.start()
            admin.enqueue_many(["after-1", "after-2"])
            wait_for(lambda: len(seen(admin)) == 3 and admin.pending() == 0, WAIT)
            assert seen(admin) == {"before": 1, "after-1": 1, "after-2": 1}
            assert get_json(server, "/healthz")[0] == 200
            assert get_json(server, "/readyz")[0] == 200
            took, families = scrape(server)
            assert stream_figures(families) == {
                "spoc_redis_stream_length": 3.0,
                "spoc_redis_stream_pending": 0.0,
                "spoc_redis_stream_lag": 0.0,
            }
    finally:
        admin.close()
        stream.close()
    print(f"{rounds} probe rounds in the outage; slowest /metrics: {slowest * 1000:.1f} ms")
